"""Subscribers: validation of addresses and preferences, and every change with its audit event.

Every status change is one function here (subscribe, confirm, suspend, resume, unsubscribe,
bounce, complain, lift, forget), checked against `statuses.SUBSCRIBER_TRANSITIONS`; an
illegal move raises `TransitionError` with one line saying why. The CLI, the web pages, the
CSV import and the send path call these and keep no status rules of their own.

Services never commit: the caller (CLI, web, daemon) owns the transaction through
`session_scope`, so a change and its Event land together or not at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime
from functools import lru_cache
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import inspect
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, delete, func, select

from digestd.core.db import chunks, sql_date
from digestd.core.models import FORMATS, FREQUENCIES, Event, Subscriber
from digestd.core.statuses import SUBSCRIBER_TRANSITIONS, SubscriberStatus
from digestd.delivery import deliveries
from digestd.subscribers import votes

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_ITEMS_RANGE = (1, 100)
NAME_MAX = 200
TOPICS_MAX = 1000
CATEGORIES_MAX = 50
# arXiv style (cs.CL, q-bio.NC, hep-th, astro-ph.GA) and other feeds' tags: no commas/spaces.
_CATEGORY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")

# Audit actions written by this module (other parts add their own, e.g. bounces).
ADDED = "subscriber.added"
UPDATED = "subscriber.updated"
STATUS = "subscriber.status"
FORGOTTEN = "subscriber.forgotten"
LINKS_REVOKED = "subscriber.links_revoked"

S = SubscriberStatus
# How a person left (the `way` in an unsubscribe's event detail; stats count by it).
UNSUBSCRIBE_WAYS = ("one-click", "page", "mail", "admin", "complaint")
IN_CHUNK = 1000


class InvalidInput(ValueError):
    """Bad input from a person; the message is one line saying what is wrong."""


class TransitionError(InvalidInput):
    """A status change the rules do not allow; the message is one line saying why."""


class Transition(Protocol):
    """The shape of the simple transitions (confirm, suspend, resume, subscribe, lift)."""

    def __call__(
        self, session: Session, sub: Subscriber, *, actor: str, now: datetime, reason: str = ""
    ) -> bool: ...


class SubscriberExists(InvalidInput):
    """The address is already subscribed (in any status); `.subscriber` is the existing row."""

    def __init__(self, subscriber: Subscriber) -> None:
        super().__init__(f"{subscriber.email} already exists (status {subscriber.status})")
        self.subscriber = subscriber


def normalize_email(raw: str) -> str:
    """The canonical form of an address, so one person is stored (and mailed) once."""
    value = (raw or "").strip()
    if not value:
        raise InvalidInput("email address is empty")
    try:
        info = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"{value!r} is not a valid email address: {exc}") from None
    # email-validator keeps the local part's case; virtually every mailbox provider ignores
    # it, and treating Ada@x and ada@x as two subscribers would mail one person twice.
    return info.normalized.lower()


@lru_cache(maxsize=1)
def _zones_by_lower() -> dict[str, str]:
    return {name.lower(): name for name in available_timezones()}


def validate_timezone(name: str) -> str:
    """The canonical IANA name for `name` (case-insensitive), or InvalidInput."""
    value = (name or "").strip()
    canonical = _zones_by_lower().get(value.lower())
    if canonical is None:
        raise InvalidInput(f"unknown time zone {value!r} (use an IANA name like Europe/Berlin)")
    try:
        ZoneInfo(canonical)
    except (ZoneInfoNotFoundError, ValueError):  # pragma: no cover - tzdata is a dependency
        raise InvalidInput(f"unknown time zone {value!r}") from None
    return canonical


def parse_weekday(value: str | int) -> int:
    """0 (Monday) … 6 (Sunday) from `mon`…`sun`, a full day name, or a number 0-6."""
    if isinstance(value, int):
        if 0 <= value <= 6:
            return value
        raise InvalidInput(f"weekday must be 0-6 or mon..sun, got {value}")
    text = str(value).strip().lower()
    if text.isdigit() and 0 <= int(text) <= 6:
        return int(text)
    if text[:3] in WEEKDAYS and (len(text) == 3 or text in _FULL_DAYS):
        return WEEKDAYS.index(text[:3])
    raise InvalidInput(f"weekday must be one of {', '.join(WEEKDAYS)}, got {value!r}")


_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def parse_categories(value: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """Categories from `cs.CL,cs.LG` or a list: checked, de-duplicated, order kept."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        cat = str(item).strip()
        if not cat:
            continue
        if not _CATEGORY_RE.match(cat):
            raise InvalidInput(f"category {cat!r} is not valid (expected names like cs.CL)")
        if cat not in out:
            out.append(cat)
    if len(out) > CATEGORIES_MAX:
        raise InvalidInput(f"at most {CATEGORIES_MAX} categories, got {len(out)}")
    return out


def _int_in(value: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool):
        raise InvalidInput(f"{what} must be a whole number {lo}-{hi}, got {value!r}")
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise InvalidInput(f"{what} must be a whole number {lo}-{hi}, got {value!r}") from None
    if not lo <= number <= hi:
        raise InvalidInput(f"{what} must be between {lo} and {hi}, got {number}")
    return number


def _choice(value: Any, what: str, choices: tuple[str, ...]) -> str:
    text = str(value).strip().lower()
    if text not in choices:
        raise InvalidInput(f"{what} must be one of {', '.join(choices)}, got {value!r}")
    return text


def _one_line(value: Any, what: str, limit: int) -> str:
    text = "" if value is None else str(value).strip()
    if "\n" in text or "\r" in text:
        raise InvalidInput(f"{what} must be on one line")
    if len(text) > limit:
        raise InvalidInput(f"{what} is too long ({len(text)} characters, at most {limit})")
    return text


@dataclass
class Preferences:
    """What a subscriber wants; `validated()` checks and normalizes every field."""

    name: str = ""
    topics: str = ""
    categories: list[str] = field(default_factory=list)
    frequency: str = "daily"
    send_hour: int = 8
    send_weekday: int = 0  # 0 = Monday; used by weekly digests
    timezone: str = "UTC"
    max_items: int = 10
    format: str = "html"

    def validated(self) -> Preferences:
        """A normalized copy (strings coerced: `"7"`, `"tue"`, `"cs.CL,cs.LG"`), or InvalidInput."""
        clean, problems = self.checked()
        if problems:
            raise InvalidInput(problems[0])
        return clean

    def checked(self) -> tuple[Preferences, list[str]]:
        """A normalized copy and every problem found, not only the first (an import reports
        each bad row whole); a field with a problem keeps its default in the copy."""
        values: dict[str, Any] = {}
        problems: list[str] = []
        for name, check in _CHECKS.items():
            try:
                values[name] = check(getattr(self, name))
            except InvalidInput as exc:
                problems.append(str(exc))
        return Preferences(**values), problems

    @classmethod
    def of(cls, sub: Subscriber) -> Preferences:
        """The preferences currently stored on a subscriber."""
        return cls(**{f.name: getattr(sub, f.name) for f in fields(cls)})

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (for events and APIs)."""
        # Not dataclasses.asdict: its deep copy dominated the cost of a 100k-row import.
        data = {name: getattr(self, name) for name in PREFERENCE_FIELDS}
        data["categories"] = list(self.categories)
        return data


PREFERENCE_FIELDS = tuple(f.name for f in fields(Preferences))

# One check per preference field: `validated` and `checked` both run exactly these.
_CHECKS: dict[str, Callable[[Any], Any]] = {
    "name": lambda v: _one_line(v, "name", NAME_MAX),
    "topics": lambda v: " ".join(_one_line(v, "topics", TOPICS_MAX).split()),
    "categories": parse_categories,
    "frequency": lambda v: _choice(v, "frequency", FREQUENCIES),
    "send_hour": lambda v: _int_in(v, "hour", 0, 23),
    "send_weekday": parse_weekday,
    "timezone": validate_timezone,
    "max_items": lambda v: _int_in(v, "max items", *MAX_ITEMS_RANGE),
    "format": lambda v: _choice(v, "format", FORMATS),
}


def record_event(
    session: Session,
    sub_id: int | None,
    action: str,
    *,
    actor: str,
    now: datetime,
    **detail: Any,
) -> Event:
    """Append one audit line: what happened to whom, by which actor, when."""
    event = Event(subscriber_id=sub_id, action=action, actor=actor, detail=detail, created_at=now)
    session.add(event)
    return event


def get_by_email(session: Session, email: str) -> Subscriber | None:
    """The subscriber with this address (normalized first), or None."""
    return _by_normalized_email(session, normalize_email(email))


def _by_normalized_email(session: Session, normalized: str) -> Subscriber | None:
    return session.exec(select(Subscriber).where(Subscriber.email == normalized)).first()


def add_subscriber(
    session: Session,
    email: str,
    prefs: Preferences,
    *,
    status: str,
    actor: str,
    now: datetime,
) -> Subscriber:
    """Create a subscriber (SubscriberExists if the address is known, whatever its status)."""
    normalized = normalize_email(email)
    clean = prefs.validated()
    status = SubscriberStatus(_choice(status, "status", tuple(SubscriberStatus)))
    existing = _by_normalized_email(session, normalized)
    if existing is not None:
        raise SubscriberExists(existing)
    sub = Subscriber(email=normalized, status=status.value, created_at=now, **clean.as_dict())
    if status == S.ACTIVE:
        sub.confirmed_at = now
    elif status == S.UNSUBSCRIBED:
        sub.unsubscribed_at = now
    session.add(sub)
    session.flush()  # the id, for the event; the caller still owns the commit
    record_event(
        session, sub.id, ADDED, actor=actor, now=now, status=status.value, **clean.as_dict()
    )
    return sub


def preference_diff(current: Subscriber | Preferences, wanted: Preferences) -> dict[str, list[Any]]:
    """{field: [old, new]} for each preference that differs (the detail of an update event)."""
    diff: dict[str, list[Any]] = {}
    for name in PREFERENCE_FIELDS:
        old, new = getattr(current, name), getattr(wanted, name)
        if old != new:
            diff[name] = [list(old) if isinstance(old, list) else old, new]
    return diff


def update_preferences(
    session: Session,
    sub: Subscriber,
    changes: dict[str, Any],
    *,
    actor: str,
    now: datetime,
) -> dict[str, list[Any]]:
    """Apply validated preference changes; returns {field: [old, new]} (empty: nothing changed)."""
    unknown = sorted(set(changes) - set(PREFERENCE_FIELDS))
    if unknown:
        raise InvalidInput(f"unknown preference {unknown[0]!r}")
    wanted = replace(Preferences.of(sub), **changes).validated()
    diff = preference_diff(sub, wanted)
    for name, (_, new) in diff.items():
        setattr(sub, name, new)
    if diff:
        session.add(sub)
        record_event(session, sub.id, UPDATED, actor=actor, now=now, changes=diff)
    return diff


# ---- status transitions: one function each ------------------------------------------------


def _forgotten(sub: Subscriber) -> bool:
    state = inspect(sub)
    return bool(state.deleted or state.was_deleted)


def _refuse(sub: Subscriber, action: str) -> TransitionError:
    """The one line that says why `action` is not possible from the subscriber's status."""
    if _forgotten(sub):
        return TransitionError(f"{sub.email} was forgotten: its data is erased, cannot {action}")
    status = sub.status
    if status == S.BOUNCED:
        why = "only an admin can lift it (digestd subscribers lift)"
    elif status == S.UNSUBSCRIBED:
        why = f"cannot {action} it; it has to subscribe again (and confirm)"
    elif status == S.PENDING:
        why = f"cannot {action} it before the address is confirmed"
    else:
        why = f"cannot {action} it"
    return TransitionError(f"{sub.email} is {status}: {why}")


def _move(
    session: Session,
    sub: Subscriber,
    to: SubscriberStatus,
    action: str,
    *,
    allowed_from: frozenset[SubscriberStatus],
    actor: str,
    now: datetime,
    reason: str = "",
    extra: dict[str, Any] | None = None,
) -> bool:
    """Apply one checked transition with its audit event; False when already at `to`."""
    if _forgotten(sub):
        raise _refuse(sub, action)
    old = SubscriberStatus(sub.status)
    if old == to:
        return False
    if old not in allowed_from or to not in SUBSCRIBER_TRANSITIONS[old]:
        raise _refuse(sub, action)
    sub.status = to.value
    if to == S.ACTIVE:
        if sub.confirmed_at is None:
            sub.confirmed_at = now
        sub.unsubscribed_at = None
    elif to == S.UNSUBSCRIBED:
        sub.unsubscribed_at = now
    session.add(sub)
    # The caller's extra detail (a bounce's reply, the way out) never overrides the move's own.
    detail: dict[str, Any] = {**(extra or {}), "from": old.value, "to": to.value}
    detail["reason"] = reason
    record_event(session, sub.id, STATUS, actor=actor, now=now, **detail)
    return True


def subscribe(
    session: Session, sub: Subscriber, *, actor: str, now: datetime, reason: str = ""
) -> bool:
    """Re-open an unsubscribed address: pending until the person confirms again."""
    return _move(
        session,
        sub,
        S.PENDING,
        "subscribe",
        allowed_from=frozenset({S.UNSUBSCRIBED}),
        actor=actor,
        now=now,
        reason=reason,
    )


def confirm(
    session: Session, sub: Subscriber, *, actor: str, now: datetime, reason: str = ""
) -> bool:
    """Pending → active: the person proved the mailbox is theirs (or an admin says so)."""
    return _move(
        session,
        sub,
        S.ACTIVE,
        "confirm",
        allowed_from=frozenset({S.PENDING}),
        actor=actor,
        now=now,
        reason=reason,
    )


def suspend(
    session: Session, sub: Subscriber, *, actor: str, now: datetime, reason: str = ""
) -> bool:
    """Pause digests (active or pending → suspended); `resume` undoes it."""
    return _move(
        session,
        sub,
        S.SUSPENDED,
        "suspend",
        allowed_from=frozenset({S.ACTIVE, S.PENDING}),
        actor=actor,
        now=now,
        reason=reason,
    )


def resume(
    session: Session, sub: Subscriber, *, actor: str, now: datetime, reason: str = ""
) -> bool:
    """Undo a suspend: active again, or pending if the address was never confirmed (resuming
    must not skip the double opt-in)."""
    to = S.ACTIVE if sub.confirmed_at is not None else S.PENDING
    return _move(
        session,
        sub,
        to,
        "resume",
        allowed_from=frozenset({S.SUSPENDED}),
        actor=actor,
        now=now,
        reason=reason,
    )


def unsubscribe(
    session: Session, sub: Subscriber, *, actor: str, now: datetime, way: str, reason: str = ""
) -> bool:
    """Stop all mail (`way`: one-click, page, mail, admin or complaint; stored in the event).

    A bounced address is already mailed nothing and stays bounced (so only `lift` brings
    it back): unsubscribing it changes nothing and is not an error (RFC 8058 asks for
    success)."""
    if way not in UNSUBSCRIBE_WAYS:
        raise InvalidInput(f"unsubscribe way must be one of {', '.join(UNSUBSCRIBE_WAYS)}")
    if sub.status == S.BOUNCED and not _forgotten(sub):
        return False
    return _move(
        session,
        sub,
        S.UNSUBSCRIBED,
        "unsubscribe",
        allowed_from=frozenset({S.PENDING, S.ACTIVE, S.SUSPENDED}),
        actor=actor,
        now=now,
        reason=reason,
        extra={"way": way},
    )


def complain(
    session: Session,
    sub: Subscriber,
    *,
    actor: str,
    now: datetime,
    reason: str = "",
    detail: dict[str, Any] | None = None,
) -> bool:
    """A spam complaint: unsubscribed at once (way "complaint")."""
    if sub.status == S.BOUNCED and not _forgotten(sub):
        return False
    return _move(
        session,
        sub,
        S.UNSUBSCRIBED,
        "unsubscribe",
        allowed_from=frozenset({S.PENDING, S.ACTIVE, S.SUSPENDED}),
        actor=actor,
        now=now,
        reason=reason,
        extra={**(detail or {}), "way": "complaint"},
    )


def bounce(
    session: Session,
    sub: Subscriber,
    *,
    actor: str,
    now: datetime,
    reason: str,
    detail: dict[str, Any] | None = None,
) -> bool:
    """The address does not work (hard bounces): no mail until an admin lifts it."""
    return _move(
        session,
        sub,
        S.BOUNCED,
        "bounce",
        allowed_from=frozenset(SubscriberStatus),
        actor=actor,
        now=now,
        reason=reason,
        extra=detail,
    )


def lift(session: Session, sub: Subscriber, *, actor: str, now: datetime, reason: str = "") -> bool:
    """An admin's decision that a bounced address works again: active, bounce count reset."""
    if sub.status not in (S.BOUNCED, S.ACTIVE) and not _forgotten(sub):
        raise TransitionError(f"{sub.email} is {sub.status}: only a bounced address is lifted")
    changed = _move(
        session,
        sub,
        S.ACTIVE,
        "lift",
        allowed_from=frozenset({S.BOUNCED}),
        actor=actor,
        now=now,
        reason=reason,
    )
    if changed:
        sub.bounce_count = 0
    return changed


# What an admin's wanted status (a CSV row's `status`) means for an existing subscriber:
# the transition that gets there from each status. Nothing here re-opens an unsubscribed
# or bounced address: only the person (subscribe + confirm) or `lift` does that.
_ADMIN_MOVES: dict[SubscriberStatus, dict[SubscriberStatus, Transition]] = {}


def admin_refusal(sub: Subscriber, wanted: SubscriberStatus) -> TransitionError | None:
    """Why an admin (a CSV import) cannot set `wanted` on this subscriber, or None."""
    if _forgotten(sub):
        return _refuse(sub, "change")
    if sub.status == wanted or sub.status in _ADMIN_MOVES[wanted]:
        return None
    return _refuse(sub, f"set {wanted} on")


def set_by_admin(
    session: Session,
    sub: Subscriber,
    wanted: SubscriberStatus,
    *,
    actor: str,
    now: datetime,
    reason: str = "admin",
) -> bool:
    """Move to `wanted` through the one transition that leads there (TransitionError if
    none does); False when already there."""
    refusal = admin_refusal(sub, wanted)
    if refusal is not None:
        raise refusal
    if sub.status == wanted:
        return False
    move = _ADMIN_MOVES[wanted][SubscriberStatus(sub.status)]
    return move(session, sub, actor=actor, now=now, reason=reason)


def _admin_unsubscribe(
    session: Session, sub: Subscriber, *, actor: str, now: datetime, reason: str = ""
) -> bool:
    return unsubscribe(session, sub, actor=actor, now=now, way="admin", reason=reason)


def _admin_bounce(
    session: Session, sub: Subscriber, *, actor: str, now: datetime, reason: str = ""
) -> bool:
    return bounce(session, sub, actor=actor, now=now, reason=reason)


_ADMIN_MOVES.update(
    {
        S.ACTIVE: {S.PENDING: confirm, S.SUSPENDED: resume},
        S.PENDING: {},
        S.SUSPENDED: {S.ACTIVE: suspend, S.PENDING: suspend},
        S.UNSUBSCRIBED: {s: _admin_unsubscribe for s in (S.PENDING, S.ACTIVE, S.SUSPENDED)},
        S.BOUNCED: {s: _admin_bounce for s in (S.PENDING, S.ACTIVE, S.SUSPENDED, S.UNSUBSCRIBED)},
    }
)


def revoke_links(session: Session, sub: Subscriber, *, actor: str, now: datetime) -> int:
    """Invalidate every signed link handed out so far; returns the new token version."""
    sub.token_version += 1
    session.add(sub)
    record_event(session, sub.id, LINKS_REVOKED, actor=actor, now=now, version=sub.token_version)
    return sub.token_version


def forget(session: Session, sub: Subscriber, *, actor: str, now: datetime) -> Event:
    """Erase a person: their row, deliveries and audit history; keep one anonymous event."""
    if _forgotten(sub):
        raise _refuse(sub, "forget")
    sub_id = sub.id
    assert sub_id is not None
    deliveries_deleted = deliveries.forget_subscriber(session, sub_id)
    # Earlier events carry the name and preferences: they are personal data too.
    events = session.exec(delete(Event).where(col(Event.subscriber_id) == sub_id)).rowcount
    votes_deleted = votes.forget(session, sub_id)
    session.delete(sub)
    event = record_event(
        session,
        None,
        FORGOTTEN,
        actor=actor,
        now=now,
        deliveries_deleted=deliveries_deleted,
        events_deleted=events,
        votes_deleted=votes_deleted,
    )
    session.flush()
    return event


# ---- listing ------------------------------------------------------------------------------


def _matching(stmt: Any, search: str | None, status: str | None) -> Any:
    if status:
        stmt = stmt.where(Subscriber.status == status)
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


# ---- figures for `digestd stats` ----------------------------------------------------------


def count_by_status(session: Session) -> dict[str, int]:
    """How many subscribers are in each status (every status, zeros included)."""
    counts = dict.fromkeys((str(s) for s in SubscriberStatus), 0)
    stmt = select(Subscriber.status, func.count()).group_by(col(Subscriber.status))
    for status, n in session.exec(stmt):
        counts[status] = int(n)
    return counts


def confirmed_per_day(session: Session, since: datetime, until: datetime) -> dict[date, int]:
    """New confirmed subscribers per UTC day (by confirmed_at) in [since, until)."""
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


def subscriber_dict(sub: Subscriber) -> dict[str, Any]:
    """The stable public view of a subscriber (CLI `--json`, APIs): documented fields only."""

    def ts(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": sub.id,
        "email": sub.email,
        "name": sub.name,
        "status": sub.status,
        "topics": sub.topics,
        "categories": list(sub.categories),
        "frequency": sub.frequency,
        "send_hour": sub.send_hour,
        "send_weekday": WEEKDAYS[sub.send_weekday],
        "timezone": sub.timezone,
        "max_items": sub.max_items,
        "format": sub.format,
        "created_at": ts(sub.created_at),
        "confirmed_at": ts(sub.confirmed_at),
        "unsubscribed_at": ts(sub.unsubscribed_at),
        "bounce_count": sub.bounce_count,
    }


# ---- what planning and sending read, and what sending reports back -------------------------

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

# What sending reads of a subscriber (no ORM objects in the hot loop).
SEND_COLUMNS = (
    col(Subscriber.id),
    col(Subscriber.email),
    col(Subscriber.name),
    col(Subscriber.status),
    col(Subscriber.format),
    col(Subscriber.topics),
    col(Subscriber.categories),
    col(Subscriber.max_items),
    col(Subscriber.timezone),
    col(Subscriber.token_version),
)


def active_page(
    session: Session, *, after_id: int, limit: int, emails: Sequence[str] | None = None
) -> list[Any]:
    """The next `limit` active subscribers after `after_id` in id order (keyset paging keeps
    memory bounded by the page), as rows of PLAN_COLUMNS."""
    stmt = (
        sa_select(*PLAN_COLUMNS)
        .where(col(Subscriber.status) == S.ACTIVE, col(Subscriber.id) > after_id)
        .order_by(col(Subscriber.id))
        .limit(limit)
    )
    if emails is not None:
        stmt = stmt.where(col(Subscriber.email).in_(emails))
    return list(session.execute(stmt).all())


def for_sending(session: Session, ids: Iterable[int]) -> dict[int, Any]:
    """Rows of SEND_COLUMNS by id (one query per chunk)."""
    wanted = sorted(set(ids))
    out: dict[int, Any] = {}
    for chunk in chunks(wanted, IN_CHUNK):
        for row in session.execute(sa_select(*SEND_COLUMNS).where(col(Subscriber.id).in_(chunk))):
            out[row.id] = row
    return out


def latest_event(session: Session, sub_id: int | None, actions: tuple[str, ...]) -> Event | None:
    """The newest audit event of these actions for a subscriber (suppression checks)."""
    stmt = (
        select(Event)
        .where(Event.subscriber_id == sub_id, col(Event.action).in_(actions))
        .order_by(col(Event.id).desc())
        .limit(1)
    )
    return session.exec(stmt).first()
