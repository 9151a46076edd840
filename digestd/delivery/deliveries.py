"""The delivery store: every statement on `delivery` (with the papers each one carried) lives here.

    pending ──claim──> sending ──record──> sent
       ^                  │ ├──> retry (next_attempt_at, backoff) ──claim──> … ──> failed
       └──── release ─────┘ ├──> failed (5xx, with the server's reply)
                            └──> skipped (empty digest / subscriber no longer active)

The interface is small: `plan` (insert due deliveries), `claim` (take a batch under a
lease), `renew` (extend it), `record` (write outcomes), `release` (hand claims back),
`history` and `sent_entry_ids` (what the window rules and never-twice read), and the admin
views (`list_deliveries`, `get`, `carried_papers`, `counts`, `retry_now`, `forget_subscriber`),
and the figures of `digestd stats` (`counts_per_day`, `oldest_waiting`). Callers own the
transaction (`session_scope`); nothing here commits.

Idempotency: the unique (subscriber, period) key plus INSERT … ON CONFLICT DO NOTHING means
planning twice, in two processes or after a restart, never creates a second delivery.
Exclusivity: a claim moves rows to `sending` with `lease_until`; on PostgreSQL the rows are
picked with `FOR UPDATE SKIP LOCKED` so replicas never claim the same row, on SQLite the
claim is one `BEGIN IMMEDIATE` transaction (single writer). A worker that dies leaves rows
in `sending`; `release` hands them back once the lease has run out, and the Message-ID
(fixed at planning) stays, so a resend is recognisably the same message.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import uuid
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.utils import parseaddr
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from digestd.core.db import chunks, sql_date
from digestd.core.models import Delivery, Entry, Subscriber, table_of
from digestd.core.statuses import CLAIMABLE, WINDOW_DONE, DeliveryStatus

D = DeliveryStatus
log = logging.getLogger(__name__)

# Retries: exponential backoff from RETRY_BASE, at most MAX_ATTEMPTS attempts in all.
# 10 min doubling over 8 attempts spreads the tries over ~21 hours ("about a day").
RETRY_BASE = timedelta(minutes=10)
RETRY_CAP = timedelta(hours=6)
MAX_ATTEMPTS = 8
# Chunk IN lists well below every backend's bound-parameter limit.
IN_CHUNK = 1000

_TABLE = table_of(Delivery)


def _joined_ids(entry_ids: Sequence[int]) -> str:
    """The `entry_ids` column of a delivery: its papers' ids in rank order, each once."""
    return ",".join(map(str, dict.fromkeys(entry_ids)))


def _split_ids(text: str | None, delivery_id: int) -> list[int]:
    """The paper ids of a delivery's `entry_ids` column, in rank order. Only digestd writes
    it; a part edited by hand into something else is skipped with one warning, so one bad
    row cannot stop a send pass or a page."""
    if not text:
        return []
    parts = text.split(",")
    ids = [int(x) for x in parts if x.isdigit()]
    if len(ids) != len(parts):
        log.warning(
            "delivery %s: entry_ids %r has parts that are not paper ids; skipped",
            delivery_id,
            text[:200],
        )
    return ids


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _aware(value: Any) -> datetime | None:
    """MAX() over a CASE loses the column type on some backends: read it back as aware UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# ---- identities ----------------------------------------------------------------------------


def new_worker_id() -> str:
    """host:pid:random: who holds a claim, unique per process and run, readable in
    `deliveries list` and logs."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def message_id_domain(from_address: str) -> str:
    """The domain of DIGESTD_FROM, for Message-IDs (`localhost` when it has none)."""
    _, addr = parseaddr(from_address)
    domain = addr.rpartition("@")[2].strip().lower()
    return domain or "localhost"


def new_message_id(period: str, subscriber_id: int, domain: str) -> str:
    """A unique Message-ID, fixed at planning and reused by every attempt."""
    return f"<digest.{period}.{subscriber_id}.{secrets.token_hex(6)}@{domain}>"


# ---- history (what the window rules and never-twice read) -----------------------------------


@dataclass(frozen=True)
class History:
    """A subscriber's past digests as the window rules need them."""

    last_due_at: datetime | None = None  # due instant of the newest delivery (any status)
    last_window_end: datetime | None = None  # end of the newest sent or skipped window


NO_HISTORY = History()

# A paper is sent only after it was ingested, and `ingested_at` never moves (ingest.store),
# so a paper ingested after `since` can only be in a delivery sent after `since`. Reading
# only those deliveries keeps the never-twice query at a subscriber's last digests instead
# of their whole history, which grows by one digest a day. The margin allows for replicas
# whose clocks disagree (by less than an hour).
SENT_AFTER_MARGIN = timedelta(hours=1)


def history(session: Session, subscriber_ids: Iterable[int]) -> dict[int, History]:
    """Per subscriber: due instant of the newest delivery and the end of the last window
    that was sent or skipped (a failed digest's window is covered again). One query a chunk;
    subscribers without deliveries get an empty History."""
    ids = list(dict.fromkeys(subscriber_ids))
    out: dict[int, History] = dict.fromkeys(ids, NO_HISTORY)
    done = col(Delivery.status).in_(WINDOW_DONE)
    for chunk in chunks(ids, IN_CHUNK):
        rows = session.execute(
            select(
                col(Delivery.subscriber_id),
                func.max(col(Delivery.due_at)),
                func.max(case((done, col(Delivery.window_end)), else_=None)),
            )
            .where(col(Delivery.subscriber_id).in_(chunk))
            .group_by(col(Delivery.subscriber_id))
        ).all()
        for sub_id, last_due, last_end in rows:
            out[sub_id] = History(_aware(last_due), _aware(last_end))
    return out


def sent_entry_ids(
    session: Session, subscriber_ids: Iterable[int], *, since: datetime | None = None
) -> dict[int, frozenset[int]]:
    """Entries already sent to each subscriber (the never-twice record). With `since`, only
    what a window starting at `since` needs: every sent entry ingested after `since`, found
    in the deliveries sent after it (see SENT_AFTER_MARGIN), with those deliveries' older
    entries too (a caller intersects with its window, as `Selector.select` does)."""
    ids = list(dict.fromkeys(subscriber_ids))
    found: dict[int, set[int]] = {i: set() for i in ids}
    # One single-table query a chunk, a range of the (subscriber_id, sent_at) index.
    # The status is checked here, not in SQL: given `status = 'sent'`, SQLite (and
    # PostgreSQL without statistics) read every sent delivery through the status index.
    for chunk in chunks(ids, IN_CHUNK):
        stmt = select(
            col(Delivery.id),
            col(Delivery.subscriber_id),
            col(Delivery.status),
            col(Delivery.entry_ids),
        ).where(col(Delivery.subscriber_id).in_(chunk))
        if since is not None:
            stmt = stmt.where(col(Delivery.sent_at) > since - SENT_AFTER_MARGIN)
        for delivery_id, sub_id, status, carried in session.execute(stmt):
            if status == D.SENT:
                found[sub_id].update(_split_ids(carried, delivery_id))
    return {k: frozenset(v) for k, v in found.items()}


# ---- planning ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewDelivery:
    """A due digest to plan (see digests.plan_coverage)."""

    subscriber_id: int
    period: str
    window_start: datetime
    window_end: datetime
    due_at: datetime
    message_id: str


# The columns `plan` writes, in the order of its rows.
_PLAN_COLUMNS = (
    "subscriber_id",
    "period",
    "status",
    "window_start",
    "window_end",
    "due_at",
    "attempts",
    "next_attempt_at",
    "message_id",
    "entry_count",
    "entry_ids",
    "created_at",
)


def plan(session: Session, rows: Sequence[NewDelivery], *, now: datetime) -> int:
    """Insert due deliveries, skipping (subscriber, period) pairs that exist; returns how many
    were new. INSERT … ON CONFLICT DO NOTHING: a concurrent planner adds nothing twice."""
    if not rows:
        return 0
    # Through the driver's executemany (`_executemany_raw`): SQLAlchemy's per-row parameter
    # handling (five datetimes a row, each through two bind processors) was 40 % of
    # planning. The driver counts only the rows it inserted, not those ON CONFLICT skipped.
    # inline(): no implicit RETURNING of the new id (PostgreSQL), which executemany drops.
    return _executemany_raw(
        session,
        _plan_statement,
        _PLAN_COLUMNS,
        [
            (
                r.subscriber_id,
                r.period,
                D.PENDING.value,
                r.window_start,
                r.window_end,
                r.due_at,
                0,
                now,
                r.message_id,
                0,
                "",
                now,
            )
            for r in rows
        ],
    )


def _plan_statement(dialect: Any) -> Any:
    insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
    return (
        insert(_TABLE)
        .inline()
        .on_conflict_do_nothing(index_elements=["subscriber_id", "period"])
        .values({name: bindparam(name, type_=_TABLE.c[name].type) for name in _PLAN_COLUMNS})
    )


# ---- claiming ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A delivery this worker holds under a lease (a plain snapshot, not a live ORM row)."""

    id: int
    subscriber_id: int
    period: str
    window_start: datetime
    window_end: datetime
    message_id: str
    attempts: int  # including the current one


def claim(
    session: Session, *, worker_id: str, limit: int, now: datetime, lease_seconds: int
) -> list[Claim]:
    """Claim up to `limit` due deliveries for this worker (pending, or retry whose time came).

    PostgreSQL: `FOR UPDATE SKIP LOCKED` lets replicas claim disjoint rows concurrently.
    SQLite: the session's transaction started with BEGIN IMMEDIATE (db.py), so the select
    and the update below run under the single write lock; no one else can claim in between.
    """
    # Only the columns a Claim needs, as rows: ORM objects with seven timestamp columns
    # cost more per claimed delivery than the claim's two statements.
    stmt = (
        select(
            col(Delivery.id),
            col(Delivery.subscriber_id),
            col(Delivery.period),
            col(Delivery.window_start),
            col(Delivery.window_end),
            col(Delivery.message_id),
            col(Delivery.attempts),
        )
        .where(col(Delivery.status).in_(CLAIMABLE), col(Delivery.next_attempt_at) <= now)
        .order_by(col(Delivery.next_attempt_at), col(Delivery.id))
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list(session.execute(stmt))
    if not rows:
        return []
    session.execute(
        update(Delivery)
        .where(col(Delivery.id).in_([r.id for r in rows]))
        .values(
            status=D.SENDING.value,
            lease_until=now + timedelta(seconds=lease_seconds),
            claimed_by=worker_id,
            attempts=col(Delivery.attempts) + 1,
        )
        .execution_options(synchronize_session=False)
    )
    return [
        Claim(
            id=r.id,
            subscriber_id=r.subscriber_id,
            period=r.period,
            window_start=r.window_start or now,
            window_end=r.window_end or now,
            message_id=r.message_id,
            attempts=r.attempts + 1,
        )
        for r in rows
    ]


def release(session: Session, now: datetime, *, worker_id: str | None = None) -> int:
    """Hand claims back to pending, claimable at once; returns how many.

    Without `worker_id`: every claim whose lease ran out (a dead worker). With it: that
    worker's unfinished claims (a graceful stop) — only rows still `sending` under this id
    match, so a delivery recorded meanwhile, or re-claimed by another worker after an expiry,
    is never touched. The Message-ID stays, so a message the server accepted just before
    the stop is a same-ID duplicate.
    """
    held = col(Delivery.status) == D.SENDING
    which = (
        col(Delivery.lease_until) < now
        if worker_id is None
        else col(Delivery.claimed_by) == worker_id
    )
    result = session.execute(
        update(Delivery)
        .where(held, which)
        .values(status=D.PENDING.value, lease_until=None, claimed_by=None, next_attempt_at=now)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result)


def renew(session: Session, worker_id: str, now: datetime, lease_seconds: int) -> int:
    """Extend the leases of the deliveries this worker still holds (a long send pass: a
    slow server or DIGESTD_SMTP_RATE), so housekeeping never hands back, and a second
    claim never re-sends, a delivery that is still on its way; returns how many.

    Rows being recorded meanwhile are skipped on PostgreSQL (SKIP LOCKED), never waited
    for: the recorder's transaction and this one touch the same rows in different orders.
    """
    held = and_(_TABLE.c.status == D.SENDING.value, _TABLE.c.claimed_by == worker_id)
    ids = select(_TABLE.c.id).where(held)
    if session.get_bind().dialect.name == "postgresql":
        ids = ids.with_for_update(skip_locked=True)
    result = session.execute(
        update(_TABLE)
        .where(_TABLE.c.id.in_(ids.scalar_subquery()), held)
        .values(lease_until=now + timedelta(seconds=lease_seconds))
    )
    return _rowcount(result)


# ---- recording -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What happened to one claimed delivery."""

    claim: Claim
    status: DeliveryStatus  # sent | retry | failed | skipped | pending (handed back unattempted)
    error: str | None = None
    entry_ids: Sequence[int] = ()


def backoff(attempts: int) -> timedelta:
    """Delay before the next try after `attempts` failed ones: 10, 20, 40 … min, capped."""
    return min(RETRY_BASE * (2 ** max(0, attempts - 1)), RETRY_CAP)


def temporary_failure(claim: Claim, reply: str) -> Outcome:
    """A 4xx or dropped connection: retry later, or fail once attempts are used up."""
    if claim.attempts >= MAX_ATTEMPTS:
        return Outcome(claim, D.FAILED, f"gave up after {claim.attempts} attempts: {reply}")
    return Outcome(claim, D.RETRY, reply)


@dataclass(frozen=True)
class _RawStatement:
    """A statement compiled for one dialect, ready for the driver's executemany."""

    sql: str
    positional: bool
    order: tuple[str, ...]  # the driver's parameters, in its order
    # Per driver parameter: (index in a row, or None for a constant of the statement;
    # the constant, in the driver's form; the bind processor, or None).
    getters: tuple[tuple[int | None, Any, Any], ...]
    as_is: bool  # rows go to the driver unchanged: no constant, no processor, same order


# Per dialect (an engine's), the compiled form of each statement builder: compiling a
# statement cost about as much as the driver's work on a group of outcomes. Weak: the
# dialects of engines that are gone (tests make many) take their entries with them.
_COMPILED: weakref.WeakKeyDictionary[Any, dict[Callable[[Any], Any], _RawStatement]] = (
    weakref.WeakKeyDictionary()
)


def _raw_statement(
    dialect: Any, build: Callable[[Any], Any], names: Sequence[str]
) -> _RawStatement:
    """`build(dialect)` compiled for `dialect`, once per dialect (see _COMPILED)."""
    per_dialect = _COMPILED.setdefault(dialect, {})
    cached = per_dialect.get(build)
    if cached is not None:
        return cached
    compiled = build(dialect).compile(dialect=dialect)
    fixed = compiled.params
    index = {n: i for i, n in enumerate(names)}
    order = tuple(compiled.positiontup if compiled.positional else fixed)
    getters: list[tuple[int | None, Any, Any]] = []
    for name in order:
        # The dialect's own processor: a TypeDecorator's `bind_processor` alone skips its
        # impl's (on SQLite, the datetime → text format every other statement writes, so
        # text comparisons in SQL agree).
        proc = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
        i = index.get(name)
        if i is None:  # a constant of the statement
            getters.append((None, proc(fixed[name]) if proc else fixed[name], None))
        else:
            getters.append((i, None, proc))
    as_is = [(i, proc) for i, _, proc in getters] == [(k, None) for k in range(len(names))]
    raw = _RawStatement(str(compiled), bool(compiled.positional), order, tuple(getters), as_is)
    per_dialect[build] = raw
    return raw


def _executemany_raw(
    session: Session,
    build: Callable[[Any], Any],
    names: Sequence[str],
    rows: list[tuple[Any, ...]],
) -> int:
    """Run the Core statement `build(dialect)` (compiled once per dialect) for many rows through
    the driver's own executemany; `rows` give the values of the bound parameters `names`,
    in that order. Returns the rows the statement changed (the driver's count over all).

    SQLAlchemy's per-row parameter handling cost about as much as SQLite's work itself.
    Here each parameter's bind processor (a datetime to the driver's form, say) is applied
    once per distinct non-None value (the rows of a batch share a few instants); the
    statement's own constants come from the compiled statement.
    """
    conn = session.connection()
    raw = _raw_statement(conn.dialect, build, names)
    if raw.as_is:
        params: list[Any] = rows  # already the driver's values, in its order
    else:
        getters = [(i, const, _memo(proc) if proc else None) for i, const, proc in raw.getters]
        params = [
            tuple(
                const if i is None else (row[i] if proc is None or row[i] is None else proc(row[i]))
                for i, const, proc in getters
            )
            for row in rows
        ]
    if not raw.positional:  # PostgreSQL's psycopg: named parameters
        params = [dict(zip(raw.order, p, strict=True)) for p in params]
    return _rowcount(conn.exec_driver_sql(raw.sql, params))


def _memo(proc: Any) -> Any:
    """`proc` applied once per distinct value, for one statement's rows."""
    done: dict[Any, Any] = {}

    def processed(value: Any) -> Any:
        try:
            return done[value]
        except KeyError:
            done[value] = out = proc(value)
            return out
        except TypeError:  # not hashable (a JSON list, say): as it is
            return proc(value)

    return processed


def record(session: Session, outcomes: Sequence[Outcome], *, worker_id: str, now: datetime) -> None:
    """Write a group of outcomes in one executemany (a sent one's papers on its own row).

    Updates only rows this worker still holds (`sending`, claimed_by = worker): if the lease
    expired and another worker took the row over, that worker's record wins.
    """
    if not outcomes:
        return
    rows = []
    for o in outcomes:
        next_at = None
        if o.status == D.RETRY:
            next_at = now + backoff(o.claim.attempts)
        elif o.status == D.PENDING:  # claimed but not attempted (a stop): claimable again
            next_at = now
        sent = o.status == D.SENT
        rows.append(
            (
                o.claim.id,
                o.status.value,
                None if sent else (o.error or None),
                next_at,
                now if sent else None,
                len(o.entry_ids) if sent else 0,
                _joined_ids(o.entry_ids) if sent else "",
                worker_id,
            )
        )
    _executemany_raw(session, _record_statement, _RECORD_NAMES, rows)


_RECORD_NAMES = ("b_id", "b_status", "b_error", "b_next", "b_sent", "b_count", "b_ids", "b_worker")


def _record_statement(dialect: Any) -> Any:
    return (
        update(_TABLE)
        .where(
            _TABLE.c.id == bindparam("b_id"),
            _TABLE.c.status == D.SENDING.value,
            _TABLE.c.claimed_by == bindparam("b_worker"),
        )
        .values(
            status=bindparam("b_status"),
            error=bindparam("b_error"),
            next_attempt_at=bindparam("b_next", type_=_TABLE.c.next_attempt_at.type),
            sent_at=bindparam("b_sent", type_=_TABLE.c.sent_at.type),
            entry_count=bindparam("b_count"),
            entry_ids=bindparam("b_ids"),
            lease_until=None,
            claimed_by=None,
        )
    )


# ---- admin views and actions ---------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryRow:
    """One delivery with its subscriber's address (`deliveries list`, `deliveries show`)."""

    id: int
    subscriber_id: int
    email: str
    period: str
    status: DeliveryStatus
    attempts: int
    entry_count: int
    window_start: datetime | None
    window_end: datetime | None
    due_at: datetime | None
    next_attempt_at: datetime | None
    sent_at: datetime | None
    created_at: datetime
    claimed_by: str | None
    lease_until: datetime | None
    message_id: str
    error: str | None


def _rows(session: Session, stmt: Any) -> list[DeliveryRow]:
    return [
        DeliveryRow(
            id=d.id,
            subscriber_id=d.subscriber_id,
            email=email,
            period=d.period,
            status=DeliveryStatus(d.status),
            attempts=d.attempts,
            entry_count=d.entry_count,
            window_start=d.window_start,
            window_end=d.window_end,
            due_at=d.due_at,
            next_attempt_at=d.next_attempt_at,
            sent_at=d.sent_at,
            created_at=d.created_at,
            claimed_by=d.claimed_by,
            lease_until=d.lease_until,
            message_id=d.message_id,
            error=d.error,
        )
        for d, email in session.execute(stmt).all()
    ]


def _with_email() -> Any:
    return select(Delivery, col(Subscriber.email)).join(
        Subscriber, col(Subscriber.id) == col(Delivery.subscriber_id)
    )


def list_deliveries(
    session: Session,
    *,
    status: DeliveryStatus | None = None,
    subscriber_id: int | None = None,
    limit: int = 100,
) -> list[DeliveryRow]:
    """The newest deliveries (optionally of one status or one subscriber), with the
    server's reply for failures."""
    stmt = _with_email().order_by(col(Delivery.id).desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(col(Delivery.status) == status)
    if subscriber_id is not None:
        stmt = stmt.where(col(Delivery.subscriber_id) == subscriber_id)
    return _rows(session, stmt)


def get(session: Session, delivery_id: int) -> DeliveryRow | None:
    """One delivery by id, or None."""
    found = _rows(session, _with_email().where(col(Delivery.id) == delivery_id))
    return found[0] if found else None


def sent_for_period(session: Session, subscriber_id: int, period: str) -> DeliveryRow | None:
    """A subscriber's digest of one period, if it was sent ("View in browser"), or None."""
    found = _rows(
        session,
        _with_email().where(
            Delivery.subscriber_id == subscriber_id,
            Delivery.period == period,
            Delivery.status == D.SENT,
        ),
    )
    return found[0] if found else None


def find_by_message_id(session: Session, message_id: str) -> DeliveryRow | None:
    """The delivery that carried this Message-ID (`<…>` included), or None."""
    found = _rows(session, _with_email().where(col(Delivery.message_id) == message_id.strip()))
    return found[0] if found else None


def entry_ids(session: Session, delivery_id: int) -> list[int]:
    """The papers a delivery carried, in rank order."""
    return _split_ids(
        session.scalar(select(col(Delivery.entry_ids)).where(col(Delivery.id) == delivery_id)),
        delivery_id,
    )


def latest_per_subscriber(session: Session) -> list[tuple[DeliveryRow, str]]:
    """Each subscriber's newest delivery with the title of its top paper ("" if none), by
    address (the demo's summary table)."""
    newest = (
        select(func.max(col(Delivery.id))).group_by(col(Delivery.subscriber_id)).scalar_subquery()
    )
    rows = _rows(
        session,
        _with_email().where(col(Delivery.id).in_(newest)).order_by(col(Subscriber.email)),
    )
    carried = dict(
        session.execute(
            select(col(Delivery.id), col(Delivery.entry_ids)).where(
                col(Delivery.id).in_([r.id for r in rows])
            )
        ).all()
    )
    first = {d: ids[0] for d, ids in ((d, _split_ids(t, d)) for d, t in carried.items()) if ids}
    titles = _titles(session, list(first.values()))
    return [(r, titles.get(first.get(r.id, 0), ("", ""))[0]) for r in rows]


def _titles(session: Session, ids: Sequence[int]) -> dict[int, tuple[str, str]]:
    """Title and link of each of these entries that exists."""
    out: dict[int, tuple[str, str]] = {}
    for chunk in chunks(list(dict.fromkeys(ids)), IN_CHUNK):
        rows = session.execute(
            select(col(Entry.id), col(Entry.title), col(Entry.url)).where(col(Entry.id).in_(chunk))
        )
        out.update((entry_id, (title, url)) for entry_id, title, url in rows)
    return out


def counts(
    session: Session, only: Sequence[DeliveryStatus] | None = None
) -> dict[DeliveryStatus, int]:
    """How many deliveries are in each status (every status present, zero when none);
    `only` counts just those (the queue's statuses: a range of the status index, not a
    scan of every delivery ever sent)."""
    out = dict.fromkeys(only or DeliveryStatus, 0)
    stmt = select(col(Delivery.status), func.count()).group_by(col(Delivery.status))
    if only:
        stmt = stmt.where(col(Delivery.status).in_(only))
    for status, n in session.execute(stmt):
        out[DeliveryStatus(status)] = int(n)
    return out


def retry_now(session: Session, now: datetime, *, failed: bool = False) -> int:
    """Make deliveries claimable at once: those waiting in `retry`, or (with `failed`) only
    the failed ones, with a fresh set of attempts. Returns how many."""
    if failed:
        stmt = (
            update(Delivery)
            .where(col(Delivery.status) == D.FAILED)
            .values(status=D.RETRY.value, attempts=0, next_attempt_at=now)
        )
    else:
        stmt = (
            update(Delivery)
            .where(
                or_(
                    col(Delivery.status) == D.RETRY,
                    and_(col(Delivery.status) == D.PENDING, col(Delivery.next_attempt_at) > now),
                )
            )
            .values(next_attempt_at=now)
        )
    return _rowcount(session.execute(stmt.execution_options(synchronize_session=False)))


def forget_subscriber(session: Session, subscriber_id: int) -> int:
    """Delete a subscriber's deliveries (with the papers each carried); returns how many."""
    return _rowcount(
        session.execute(delete(Delivery).where(col(Delivery.subscriber_id) == subscriber_id))
    )


def latest_sent(session: Session, subscriber_id: int) -> DeliveryRow | None:
    """A subscriber's newest delivery that went out (a bounce that names only an address)."""
    found = _rows(
        session,
        _with_email()
        .where(Delivery.subscriber_id == subscriber_id, Delivery.status == DeliveryStatus.SENT)
        .order_by(col(Delivery.id).desc())
        .limit(1),
    )
    return found[0] if found else None


@dataclass(frozen=True)
class CarriedPaper:
    """A paper a delivery carried, in rank order (`deliveries show`)."""

    rank: int
    entry_id: int
    title: str
    url: str


def carried_papers(session: Session, delivery_id: int) -> list[CarriedPaper]:
    """The papers a sent delivery carried, in the order of the digest, with title and link."""
    ids = entry_ids(session, delivery_id)
    found = _titles(session, ids)
    return [
        CarriedPaper(rank, entry_id, *found[entry_id])
        for rank, entry_id in enumerate(ids)
        if entry_id in found
    ]


# ---- figures for `digestd stats` ----------------------------------------------------------


@dataclass(frozen=True)
class DayCount:
    """Deliveries of one UTC day (sent: by when sent; others: by when due) and one status."""

    day: date
    status: DeliveryStatus
    count: int
    hard: int  # refused for good at SMTP time (a 5xx reply)
    soft: int  # met at least one temporary failure (retried, or waiting for a retry)


def counts_per_day(session: Session, since: datetime, until: datetime) -> list[DayCount]:
    """Deliveries per UTC day and status in [since, until): one grouped query for `stats`."""
    when = func.coalesce(col(Delivery.sent_at), col(Delivery.due_at), col(Delivery.created_at))
    day = func.date(when)
    status = col(Delivery.status)
    hard = case((and_(status == D.FAILED, col(Delivery.error).like("5%")), 1), else_=0)
    soft = case((or_(col(Delivery.attempts) > 1, status == D.RETRY), 1), else_=0)
    stmt = (
        select(day, status, func.count(), func.sum(hard), func.sum(soft))
        .where(when >= since, when < until)
        .group_by(day, status)
    )
    return [
        DayCount(sql_date(d), DeliveryStatus(st), int(n), int(h or 0), int(f or 0))
        for d, st, n, h, f in session.execute(stmt)
    ]


def oldest_waiting(session: Session, now: datetime) -> DeliveryRow | None:
    """The due delivery that has waited longest (pending or retry, and its time has come)."""
    stmt = (
        _with_email()
        .where(col(Delivery.status).in_(CLAIMABLE), col(Delivery.next_attempt_at) <= now)
        .order_by(func.coalesce(col(Delivery.due_at), col(Delivery.created_at)), col(Delivery.id))
        .limit(1)
    )
    found = _rows(session, stmt)
    return found[0] if found else None


def waiting(session: Session, now: datetime) -> tuple[int, datetime | None]:
    """How many deliveries are due and claimable now, and since when the oldest has been
    (a delivery due long ago and still unclaimed means sending is stuck or falling behind)."""
    stmt = select(func.count(), func.min(Delivery.next_attempt_at)).where(
        col(Delivery.status).in_(CLAIMABLE),
        col(Delivery.next_attempt_at) <= now,
    )
    count, oldest = session.execute(stmt).one()
    return int(count), _aware(oldest)
