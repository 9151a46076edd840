"""The subscriber store: every statement on `subscriber`, its audit `event`s and the
per-address mail count (`address_mail`). Votes and liked papers are `vote_store`.

A small typed interface, one function per question or write, with bulk forms for the CSV
import (one query per batch, executemany). Only `digestd.subscribers` imports it (an
import-linter contract): other parts go through its use cases and `queries`. Nothing here
commits: the use case that calls it owns the transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple, Protocol, cast

from sqlalchemy import Text, bindparam, delete, insert, update
from sqlalchemy import cast as sa_cast
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, func, select

from digestd.core.context import AppContext
from digestd.core.db import chunks, session_scope, sql_date
from digestd.core.models import AddressMail, Event, Schedule, Subscriber, table_of
from digestd.core.statuses import SubscriberStatus
from digestd.subscribers.lifecycle import DIGEST_STATUSES, STATUS, Change

IN_CHUNK = 1000
TABLE = table_of(Subscriber)
EVENTS = table_of(Event)
# The tables whose planner statistics planning keeps fresh on PostgreSQL (db.refresh_statistics).
TABLE_NAMES = (TABLE.name,)


@contextmanager
def transaction(ctx: AppContext) -> Iterator[Session]:
    """A use case's transaction (`session_scope`). The secret key is read first: on first
    use it is generated and stored in a transaction of its own, which on SQLite must not
    wait for this one's write lock."""
    _ = ctx.secret_key
    with session_scope(ctx.engine) as session:
        yield session


# ---- one subscriber -------------------------------------------------------------------------


def get(session: Session, sub_id: int) -> Subscriber | None:
    """The subscriber with this id, or None."""
    return session.get(Subscriber, sub_id)


def by_email(session: Session, normalized: str) -> Subscriber | None:
    """The subscriber with this (already normalized) address, or None."""
    return session.exec(select(Subscriber).where(Subscriber.email == normalized)).first()


def by_emails(session: Session, emails: Sequence[str]) -> dict[str, Subscriber]:
    """The subscribers with these (normalized) addresses, by address: one query a chunk."""
    out: dict[str, Subscriber] = {}
    for chunk in chunks(list(emails), IN_CHUNK):
        stmt = select(Subscriber).where(col(Subscriber.email).in_(chunk))
        out.update((sub.email, sub) for sub in session.exec(stmt))
    return out


def add(session: Session, sub: Subscriber, change: Change, *, actor: str, now: datetime) -> None:
    """Store a new subscriber and its `added` event (flushed: the id is known after)."""
    session.add(sub)
    session.flush()
    record(session, sub, change, actor=actor, now=now)


def save(
    session: Session,
    sub: Subscriber,
    changes: Iterable[Change | None],
    *,
    actor: str,
    now: datetime,
) -> bool:
    """Store a changed subscriber with the audit line of each change; False when none."""
    done = [c for c in changes if c is not None]
    session.add(sub)
    for change in done:
        record(session, sub, change, actor=actor, now=now)
    return bool(done)


def record(
    session: Session, sub: Subscriber | None, change: Change, *, actor: str, now: datetime
) -> Event:
    """Append one audit line: what happened to whom, by which actor, when."""
    event = Event(
        subscriber_id=sub.id if sub is not None else None,
        action=change.action,
        actor=actor,
        detail=change.detail,
        created_at=now,
    )
    session.add(event)
    return event


def delete_subscriber(session: Session, sub: Subscriber) -> int:
    """Erase a subscriber's row, audit history and address counts; returns the events
    deleted (its deliveries and votes are their stores' to erase first)."""
    assert sub.id is not None
    events = session.execute(delete(Event).where(col(Event.subscriber_id) == sub.id))
    session.execute(delete(AddressMail).where(col(AddressMail.address) == sub.email))
    session.delete(sub)
    session.flush()
    return int(events.rowcount or 0)  # type: ignore[attr-defined]


# ---- its audit trail ------------------------------------------------------------------------


def events_of(session: Session, sub_id: int, limit: int) -> list[Event]:
    """A subscriber's newest audit events, newest first."""
    stmt = (
        select(Event)
        .where(Event.subscriber_id == sub_id)
        .order_by(col(Event.created_at).desc(), col(Event.id).desc())
        .limit(limit)
    )
    return list(session.exec(stmt).all())


def event_of(session: Session, sub_id: int, event_id: int, action: str) -> Event | None:
    """One event of this subscriber and action (a sign-up request a link names), or None."""
    stmt = select(Event).where(
        Event.id == event_id, Event.subscriber_id == sub_id, Event.action == action
    )
    return session.exec(stmt).first()


def count_events(session: Session, sub_id: int, action: str, since: datetime) -> int:
    """How many events of this action a subscriber has had since `since`."""
    stmt = (
        select(func.count())
        .select_from(Event)
        .where(
            Event.subscriber_id == sub_id,
            Event.action == action,
            col(Event.created_at) >= since,
        )
    )
    return int(session.exec(stmt).one())


# ---- mail to an address that is not a digest (the per-address daily cap) ---------------------


def mails_to(session: Session, address: str, since: datetime) -> int:
    """How many confirmations and command replies went to this address since `since`."""
    stmt = (
        select(func.count())
        .select_from(AddressMail)
        .where(AddressMail.address == address, col(AddressMail.sent_at) >= since)
    )
    return int(session.exec(stmt).one())


def mail_sent(session: Session, address: str, kind: str, now: datetime) -> None:
    """Count one confirmation or reply to this address."""
    session.add(AddressMail(address=address, kind=kind, sent_at=now))


# ---- bulk, for the CSV import ------------------------------------------------------------------


def insert_many(session: Session, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Insert new subscribers (column values; link keys included); returns their ids by
    address. Plain executemany, then one SELECT for the ids: INSERT … RETURNING over a whole
    batch made psycopg re-parse a huge statement per batch (3x slower on PostgreSQL)."""
    if not rows:
        return {}
    conn = session.connection()
    conn.execute(insert(TABLE), rows)
    emails = [row["email"] for row in rows]
    ids: dict[str, int] = {}
    for chunk in chunks(emails, IN_CHUNK):
        ids.update(
            (email, sub_id)
            for sub_id, email in conn.execute(
                sa_select(TABLE.c.id, TABLE.c.email).where(TABLE.c.email.in_(chunk))
            )
        )
    return ids


def update_many(session: Session, updates: list[dict[str, Any]]) -> None:
    """Update columns of many subscribers: dicts of the same columns plus `b_id`."""
    if not updates:
        return
    stmt = (
        update(TABLE)
        .where(TABLE.c.id == bindparam("b_id"))
        .values({name: bindparam(name) for name in updates[0] if name != "b_id"})
    )
    session.connection().execute(stmt, updates)


def record_many(
    session: Session, changes: list[tuple[int, Change]], *, actor: str, now: datetime
) -> None:
    """Append many audit lines (subscriber id, change) in one executemany."""
    if not changes:
        return
    rows = [
        {
            "subscriber_id": sub_id,
            "action": change.action,
            "actor": actor,
            "detail": change.detail,
            "created_at": now,
        }
        for sub_id, change in changes
    ]
    session.connection().execute(insert(EVENTS), rows)


# ---- listing --------------------------------------------------------------------------------


def _matching(stmt: Any, search: str | None, status: str | None) -> Any:
    if status:
        stmt = stmt.where(col(Subscriber.status) == SubscriberStatus(status))
    if search:
        # Plain substring (wildcards in the text are literal), case-insensitive on both backends.
        stmt = stmt.where(
            col(Subscriber.email).icontains(search, autoescape=True)
            | col(Subscriber.name).icontains(search, autoescape=True)
        )
    return stmt


def list_page(
    session: Session,
    *,
    search: str | None = None,
    status: str | None = None,
    after_id: int = 0,
    limit: int = 50,
) -> list[Subscriber]:
    """One page of subscribers (oldest first) after `after_id`: keyset paging, so a page
    costs the same at the end of a million-row list as at the start."""
    stmt = _matching(select(Subscriber), search, status)
    stmt = stmt.where(col(Subscriber.id) > after_id).order_by(col(Subscriber.id)).limit(limit)
    return list(session.exec(stmt))


def count_matching(
    session: Session, *, search: str | None = None, status: str | None = None, after_id: int = 0
) -> int:
    """How many subscribers `list_page` would page through (after `after_id`)."""
    stmt = _matching(select(func.count()).select_from(Subscriber), search, status)
    if after_id:
        stmt = stmt.where(col(Subscriber.id) > after_id)
    return int(session.exec(stmt).one())


def stream(session: Session, *, status: str | None, batch_size: int) -> Iterator[Subscriber]:
    """Every subscriber (of one status, if given), oldest first, fetched in batches."""
    stmt = _matching(select(Subscriber), None, status).order_by(col(Subscriber.id))
    yield from session.exec(stmt.execution_options(yield_per=batch_size))


def last_status_events(session: Session, sub_ids: list[int], action: str) -> dict[int, Event]:
    """Each subscriber's newest event of `action` (the last status change: why and how mail
    stopped, for `export`), one query for the whole batch."""
    if not sub_ids:
        return {}
    stmt = (
        select(Event)
        .where(col(Event.subscriber_id).in_(sub_ids), Event.action == action)
        .order_by(col(Event.created_at), col(Event.id))
    )
    return {e.subscriber_id: e for e in session.exec(stmt) if e.subscriber_id is not None}


# ---- figures for `digestd stats` and /metrics -------------------------------------------------


def count_by_status(session: Session) -> dict[str, int]:
    """How many subscribers are in each status (every status, zeros included)."""
    counts = dict.fromkeys((str(s) for s in SubscriberStatus), 0)
    stmt = sa_select(col(Subscriber.status), func.count()).group_by(col(Subscriber.status))
    for status, n in session.execute(stmt):
        counts[str(status)] = int(n)
    return counts


def confirmed_per_day(session: Session, since: datetime, until: datetime) -> dict[date, int]:
    """New confirmed subscribers per UTC day (by confirmed_at: an imported address counts on
    its own confirmation day, from the file) in [since, until)."""
    confirmed = col(Subscriber.confirmed_at)
    day = func.date(confirmed)
    stmt = select(day, func.count()).where(confirmed >= since, confirmed < until).group_by(day)
    return {sql_date(d): int(n) for d, n in session.exec(stmt)}


@dataclass(frozen=True)
class StatusChanges:
    """Status events of one UTC day with the same from, to and way."""

    day: date
    old: str
    new: str
    way: str  # the transition's way ("one-click", "page", "mail", "admin", "complaint") or ""
    count: int


def status_changes_per_day(
    session: Session, since: datetime, until: datetime
) -> list[StatusChanges]:
    """Subscriber status changes per UTC day, from their audit events in [since, until)."""
    created = col(Event.created_at)
    detail = col(Event.detail)
    day = func.date(created)
    old, new = detail["from"].as_string(), detail["to"].as_string()
    # Events written before `way` existed carried the way as the reason ("one-click").
    way = func.coalesce(detail["way"].as_string(), detail["reason"].as_string(), "")
    # SQLAlchemy's select: sqlmodel's is typed for at most four columns.
    stmt = (
        sa_select(day, old, new, way, func.count())
        .where(col(Event.action) == STATUS, created >= since, created < until)
        .group_by(day, old, new, way)
    )
    return [
        StatusChanges(sql_date(d), o or "", n or "", w or "", int(c))
        for d, o, n, w, c in session.execute(stmt)
    ]


# ---- what planning and sending read ---------------------------------------------------------

# What planning reads of a subscriber: plain rows, not ORM objects (cheaper per subscriber).
PLAN_COLUMNS = (
    col(Subscriber.id),
    col(Subscriber.email),
    col(Subscriber.frequency),
    col(Subscriber.send_hour),
    col(Subscriber.send_weekday),
    col(Subscriber.timezone),
    col(Subscriber.confirmed_at),
    col(Subscriber.created_at),
)


class PlanRow(Schedule, Protocol):
    """A subscriber as planning reads it: a Core row of PLAN_COLUMNS."""

    @property
    def id(self) -> int: ...
    @property
    def email(self) -> str: ...
    @property
    def confirmed_at(self) -> datetime | None: ...
    @property
    def created_at(self) -> datetime: ...


# What sending reads of a subscriber (no ORM objects in the hot loop): what may_mail reads,
# the preferences a digest is selected by, and the link key its links are bound to.
SEND_COLUMNS = (
    col(Subscriber.id),
    col(Subscriber.email),
    col(Subscriber.name),
    col(Subscriber.status),
    col(Subscriber.suppressed),
    col(Subscriber.format),
    col(Subscriber.topics),
    col(Subscriber.categories),
    col(Subscriber.follows),
    col(Subscriber.muted_authors),
    col(Subscriber.max_items),
    col(Subscriber.timezone),
    col(Subscriber.link_key),
)
# The JSON lists among them, read as their text and decoded once per distinct text of a
# query (`for_sending`): subscribers share a few ("[]", a category), and the JSON type's
# decoding of every value was most of the query's time (500 rows: ≈19 → 7 µs a row).
_SEND_LISTS = frozenset({"categories", "follows", "muted_authors"})


class SendRow(NamedTuple):
    """A subscriber as sending reads it: SEND_COLUMNS, in that order (lists as tuples)."""

    id: int
    email: str
    name: str
    status: SubscriberStatus
    suppressed: bool
    format: str
    topics: str
    categories: tuple[str, ...]
    follows: tuple[str, ...]
    muted_authors: tuple[str, ...]
    max_items: int
    timezone: str
    link_key: str


_SEND_SELECT = tuple(
    sa_cast(c, Text).label(name) if name in _SEND_LISTS else c
    for name, c in zip(SendRow._fields, SEND_COLUMNS, strict=True)
)


def active_page(
    session: Session, *, after_id: int, limit: int, emails: Sequence[str] | None = None
) -> list[PlanRow]:
    """The next `limit` subscribers digests go to after `after_id` in id order (keyset
    paging keeps memory bounded by the page), as rows of PLAN_COLUMNS."""
    stmt = (
        sa_select(*PLAN_COLUMNS)
        .where(col(Subscriber.status).in_(DIGEST_STATUSES), col(Subscriber.id) > after_id)
        .order_by(col(Subscriber.id))
        .limit(limit)
    )
    if emails is not None:
        stmt = stmt.where(col(Subscriber.email).in_(emails))
    # The driver's rows carry exactly PLAN_COLUMNS (SQLAlchemy types them as any row).
    return cast("list[PlanRow]", list(session.execute(stmt).all()))


def for_sending(session: Session, ids: Iterable[int]) -> dict[int, SendRow]:
    """Rows of SEND_COLUMNS by id (one query per chunk)."""
    wanted = sorted(set(ids))
    out: dict[int, SendRow] = {}
    lists: dict[str | None, tuple[str, ...]] = {}  # a JSON text, decoded once

    def decoded(text: str | None) -> tuple[str, ...]:
        found = lists.get(text)
        if found is None:
            found = lists[text] = tuple(json.loads(text) or ()) if text is not None else ()
        return found

    for chunk in chunks(wanted, IN_CHUNK):
        rows = session.execute(sa_select(*_SEND_SELECT).where(col(Subscriber.id).in_(chunk)))
        for sub_id, email, name, status, suppressed, fmt, topics, *more in rows:
            cats, follows, muted, max_items, zone, link_key = more
            out[sub_id] = SendRow(
                sub_id,
                email,
                name,
                status,
                suppressed,
                fmt,
                topics,
                decoded(cats),
                decoded(follows),
                decoded(muted),
                max_items,
                zone,
                link_key,
            )
    return out
