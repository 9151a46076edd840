"""The outbox: planning deliveries, claiming them under a lease, recording what happened.

Every query and state transition of `Delivery` lives here.

    pending ──claim──> sending ──> sent
       ^                  │ ├──> retry (next_attempt_at, backoff) ──claim──> … ──> failed
       └── lease expired ─┘ ├──> failed (5xx, with the server's reply)
                            └──> skipped (empty digest / subscriber no longer active)

Idempotency: the unique (subscriber, period) key plus INSERT … ON CONFLICT DO NOTHING means
planning twice, in two processes or after a restart, never creates a second delivery.
Exclusivity: a claim moves rows to `sending` with `lease_until`; on PostgreSQL the rows are
picked with `FOR UPDATE SKIP LOCKED` so replicas never claim the same row, on SQLite the
claim is one `BEGIN IMMEDIATE` transaction (single writer). A worker that dies leaves rows
in `sending`; `release_expired` hands them back once the lease has run out, and the
Message-ID (fixed at planning) stays, so a resend is recognisably the same message.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Any

from sqlalchemy import and_, bindparam, case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from digestd.context import AppContext
from digestd.db import chunks, session_scope
from digestd.models import Delivery, DeliveryEntry, Entry, Event, Subscriber
from digestd.planning import due_period, window

# Retries: exponential backoff from RETRY_BASE, at most MAX_ATTEMPTS attempts in all.
# 10 min doubling over 8 attempts spreads the tries over ~21 hours ("about a day").
RETRY_BASE = timedelta(minutes=10)
RETRY_CAP = timedelta(hours=6)
MAX_ATTEMPTS = 8
# Consecutive hard bounces (5.1.x) after which a subscriber is marked bounced.
BOUNCE_LIMIT = 3
CLAIMABLE = ("pending", "retry")
# Chunk IN lists well below every backend's bound-parameter limit.
IN_CHUNK = 1000


# ---- planning ------------------------------------------------------------------------


@dataclass
class PlanReport:
    """What one planning pass did."""

    checked: int = 0  # active subscribers looked at
    planned: int = 0  # new deliveries created
    existing: int = 0  # due, but the (subscriber, period) delivery already existed
    unknown: list[str] = field(default_factory=list)  # emails asked for that are not active


def message_id_domain(from_address: str) -> str:
    """The domain of DIGESTD_FROM, for Message-IDs (`localhost` when it has none)."""
    _, addr = parseaddr(from_address)
    domain = addr.rpartition("@")[2].strip().lower()
    return domain or "localhost"


def new_message_id(period: str, subscriber_id: int, domain: str) -> str:
    """A unique Message-ID, fixed at planning and reused by every attempt."""
    return f"<digest.{period}.{subscriber_id}.{secrets.token_hex(6)}@{domain}>"


def _insert(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql if dialect == "postgresql" else sqlite).insert


PLAN_COLUMNS = (
    Subscriber.id,
    Subscriber.email,
    Subscriber.frequency,
    Subscriber.send_hour,
    Subscriber.send_weekday,
    Subscriber.timezone,
    Subscriber.confirmed_at,
    Subscriber.created_at,
)


def _active_batches(
    ctx: AppContext, emails: Sequence[str] | None, batch_size: int
) -> Iterator[list[Any]]:
    """Active subscribers in id order, `batch_size` at a time (keyset paging, bounded memory)."""
    last_id = 0
    while True:
        with session_scope(ctx.engine) as session:
            # Only the columns planning reads (rows, not ORM objects): cheaper per subscriber.
            stmt = (
                select(*PLAN_COLUMNS)
                .where(Subscriber.status == "active", Subscriber.id > last_id)  # type: ignore[operator]
                .order_by(Subscriber.id)  # type: ignore[arg-type]
                .limit(batch_size)
            )
            if emails is not None:
                stmt = stmt.where(Subscriber.email.in_(emails))  # type: ignore[attr-defined]
            batch = list(session.execute(stmt).all())
        if not batch:
            return
        yield batch
        last_id = batch[-1].id or last_id


def _history(session: Session, ids: Sequence[int]) -> dict[int, tuple[Any, Any]]:
    """Per subscriber: due instant of the newest delivery, and the end of the last window
    that was sent or skipped (a failed digest's window is covered again). One query."""
    done = Delivery.status.in_(("sent", "skipped"))  # type: ignore[attr-defined]
    rows = session.execute(
        select(
            Delivery.subscriber_id,
            func.max(Delivery.due_at),
            func.max(case((done, Delivery.window_end), else_=None)),
        )
        .where(Delivery.subscriber_id.in_(ids))  # type: ignore[attr-defined]
        .group_by(Delivery.subscriber_id)
    ).all()
    out: dict[int, tuple[Any, Any]] = {}
    for sub_id, last_due, last_end in rows:
        out[sub_id] = (_aware(last_due), _aware(last_end))
    return out


def _aware(value: Any) -> datetime | None:
    """MAX() over a CASE loses the column type on some backends: read it back as aware UTC."""
    from datetime import UTC

    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def plan_due(
    ctx: AppContext, *, force: bool = False, emails: Iterable[str] | None = None
) -> PlanReport:
    """Create the deliveries that are due now (or, with `force`, for the current period).

    Streams active subscribers in batches; per batch one history query and one INSERT …
    ON CONFLICT DO NOTHING, so a concurrent planner (or a second run) adds nothing.
    """
    now = ctx.now()
    wanted = sorted({e.strip().lower() for e in emails}) if emails is not None else None
    domain = message_id_domain(ctx.settings.from_address)
    report = PlanReport()
    seen: set[str] = set()
    for batch in _active_batches(ctx, wanted, ctx.settings.batch_size):
        report.checked += len(batch)
        seen.update(s.email for s in batch)
        with session_scope(ctx.engine) as session:
            history = _history(session, [s.id for s in batch if s.id is not None])
            rows = []
            for sub in batch:
                assert sub.id is not None
                last_due, last_end = history.get(sub.id, (None, None))
                due = due_period(
                    sub.frequency,
                    sub.send_hour,
                    sub.send_weekday,
                    sub.timezone,
                    now,
                    last_due_at=last_due,
                    since=sub.confirmed_at or sub.created_at,
                    force=force,
                )
                if due is None:
                    continue
                start, end = window(sub.frequency, now, last_end)
                rows.append(
                    {
                        "subscriber_id": sub.id,
                        "period": due.period,
                        "status": "pending",
                        "window_start": start,
                        "window_end": end,
                        "due_at": due.due_at,
                        "attempts": 0,
                        "next_attempt_at": now,
                        "message_id": new_message_id(due.period, sub.id, domain),
                        "entry_count": 0,
                        "created_at": now,
                    }
                )
            if rows:
                # executemany: SQLAlchemy batches it as multi-row INSERTs ("insertmanyvalues")
                # without compiling one giant statement per batch.
                # On the Core table: the ORM bulk-insert layer cost ~15% of planning.
                table = Delivery.__table__  # type: ignore[attr-defined]
                stmt = (
                    _insert(session)(table)
                    .on_conflict_do_nothing(index_elements=["subscriber_id", "period"])
                    .returning(table.c.id)
                )
                inserted = len(session.connection().execute(stmt, rows).all())
                report.planned += inserted
                report.existing += len(rows) - inserted
    if wanted is not None:
        report.unknown = [e for e in wanted if e not in seen]
    return report


# ---- claiming --------------------------------------------------------------------------


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


def claim_batch(
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
            Delivery.id,
            Delivery.subscriber_id,
            Delivery.period,
            Delivery.window_start,
            Delivery.window_end,
            Delivery.message_id,
            Delivery.attempts,
        )
        .where(
            Delivery.status.in_(CLAIMABLE),  # type: ignore[attr-defined]
            Delivery.next_attempt_at <= now,  # type: ignore[operator]
        )
        .order_by(Delivery.next_attempt_at, Delivery.id)  # type: ignore[arg-type]
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list(session.execute(stmt))
    if not rows:
        return []
    ids = [r.id for r in rows]
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_(ids))  # type: ignore[union-attr]
        .values(
            status="sending",
            lease_until=now + timedelta(seconds=lease_seconds),
            claimed_by=worker_id,
            attempts=Delivery.attempts + 1,
        )
        .execution_options(synchronize_session=False)
    )
    return [
        Claim(
            id=r.id,  # type: ignore[arg-type]
            subscriber_id=r.subscriber_id,
            period=r.period,
            window_start=r.window_start or now,
            window_end=r.window_end or now,
            message_id=r.message_id,
            attempts=r.attempts + 1,
        )
        for r in rows
    ]


def release_expired(session: Session, now: datetime) -> int:
    """Hand deliveries whose lease ran out (a dead worker) back to pending; returns how many."""
    result = session.execute(
        update(Delivery)
        .where(Delivery.status == "sending", Delivery.lease_until < now)  # type: ignore[operator]
        .values(status="pending", lease_until=None, claimed_by=None, next_attempt_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# ---- recording -------------------------------------------------------------------------


@dataclass
class Outcome:
    """What happened to one claimed delivery."""

    claim: Claim
    status: str  # sent | retry | failed | skipped | pending (handed back unattempted)
    error: str | None = None
    entry_ids: Sequence[int] = ()
    bad_address: bool = False  # a hard 5.1.x bounce


def backoff(attempts: int) -> timedelta:
    """Delay before the next try after `attempts` failed ones: 10, 20, 40 … min, capped."""
    return min(RETRY_BASE * (2 ** max(0, attempts - 1)), RETRY_CAP)


def temporary_failure(claim: Claim, reply: str) -> Outcome:
    """A 4xx or dropped connection: retry later, or fail once attempts are used up."""
    if claim.attempts >= MAX_ATTEMPTS:
        return Outcome(claim, "failed", f"gave up after {claim.attempts} attempts: {reply}")
    return Outcome(claim, "retry", reply)


def _executemany_raw(session: Session, stmt: Any, rows: list[dict[str, Any]]) -> None:
    """Run a Core statement for many rows through the driver's own executemany.

    SQLAlchemy's per-row parameter handling cost about as much as SQLite's insert itself
    (≈1.5 µs a row, ≈10 rows per sent message). Only for columns needing no bind
    processing (ints, plain strings): values go to the driver as they are.
    """
    conn = session.connection()
    compiled = stmt.compile(dialect=conn.dialect)
    params: list[Any] = rows
    if compiled.positional:  # SQLite's "?" placeholders take tuples, in placeholder order
        names = compiled.positiontup or []
        params = [tuple(row[n] for n in names) for row in rows]
    conn.exec_driver_sql(str(compiled), params)


def record_outcomes(
    session: Session, outcomes: Sequence[Outcome], *, worker_id: str, now: datetime, actor: str
) -> list[int]:
    """Write a batch of results in a few statements; returns ids of newly bounced subscribers.

    Updates only rows this worker still holds (`sending`, claimed_by = worker): if the lease
    expired and another worker took the row over, that worker's record wins.
    """
    if not outcomes:
        return []
    table = Delivery.__table__  # type: ignore[attr-defined]
    params = []
    for o in outcomes:
        next_at = None
        if o.status == "retry":
            next_at = now + backoff(o.claim.attempts)
        elif o.status == "pending":  # claimed but not attempted (a stop): claimable again
            next_at = now
        params.append(
            {
                "b_id": o.claim.id,
                "b_status": o.status,
                "b_error": (o.error or None) if o.status != "sent" else None,
                "b_next": next_at,
                "b_sent": now if o.status == "sent" else None,
                "b_count": len(o.entry_ids),
            }
        )
    stmt = (
        update(table)
        .where(
            table.c.id == bindparam("b_id"),
            table.c.status == "sending",
            table.c.claimed_by == worker_id,
        )
        .values(
            status=bindparam("b_status"),
            error=bindparam("b_error"),
            next_attempt_at=bindparam("b_next", type_=table.c.next_attempt_at.type),
            sent_at=bindparam("b_sent", type_=table.c.sent_at.type),
            entry_count=bindparam("b_count"),
            lease_until=None,
            claimed_by=None,
        )
    )
    session.connection().execute(stmt, params)

    links = [
        {"delivery_id": o.claim.id, "entry_id": entry_id, "rank": rank}
        for o in outcomes
        if o.status == "sent"
        for rank, entry_id in enumerate(dict.fromkeys(o.entry_ids))
    ]
    if links:
        # One driver executemany (the driver loops over the rows), not a multi-row VALUES
        # statement: compiling ~5000 rows' bound parameters cost more than the whole
        # write (≈0.15 ms per delivery in benchmarks/bench_delivery.py).
        _executemany_raw(
            session,
            _insert(session)(DeliveryEntry.__table__).on_conflict_do_nothing(  # type: ignore[attr-defined]
                index_elements=["delivery_id", "entry_id"]
            ),
            links,
        )

    # A delivered message proves the address works: consecutive-bounce count starts over.
    delivered = sorted({o.claim.subscriber_id for o in outcomes if o.status == "sent"})
    for chunk in chunks(delivered, IN_CHUNK):
        session.execute(
            update(Subscriber)
            .where(Subscriber.id.in_(chunk), Subscriber.bounce_count > 0)  # type: ignore[union-attr]
            .values(bounce_count=0)
            .execution_options(synchronize_session=False)
        )
    bounced_ids = sorted({o.claim.subscriber_id for o in outcomes if o.bad_address})
    newly_bounced: list[int] = []
    for chunk in chunks(bounced_ids, IN_CHUNK):
        session.execute(
            update(Subscriber)
            .where(Subscriber.id.in_(chunk))  # type: ignore[union-attr]
            .values(bounce_count=Subscriber.bounce_count + 1)
            .execution_options(synchronize_session=False)
        )
        over = list(
            session.scalars(
                select(Subscriber.id).where(
                    Subscriber.id.in_(chunk),  # type: ignore[union-attr]
                    Subscriber.status == "active",
                    Subscriber.bounce_count >= BOUNCE_LIMIT,
                )
            )
        )
        if over:
            session.execute(
                update(Subscriber)
                .where(Subscriber.id.in_(over))  # type: ignore[union-attr]
                .values(status="bounced")
                .execution_options(synchronize_session=False)
            )
            reasons = {o.claim.subscriber_id: o.error for o in outcomes if o.bad_address}
            session.add_all(
                Event(
                    subscriber_id=sid,
                    action="bounced",
                    actor=actor,
                    detail={"reply": reasons.get(sid) or "", "limit": BOUNCE_LIMIT},
                    created_at=now,
                )
                for sid in over
            )
            newly_bounced.extend(over)
    return newly_bounced


# ---- admin views and actions -------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryRow:
    """A delivery with its subscriber's address, for `deliveries list`."""

    id: int
    email: str
    period: str
    status: str
    attempts: int
    entry_count: int
    due_at: datetime | None
    next_attempt_at: datetime | None
    sent_at: datetime | None
    message_id: str
    error: str | None


def list_deliveries(
    session: Session, *, status: str | None = None, limit: int = 100
) -> list[DeliveryRow]:
    """The newest deliveries (optionally of one status), with the server's reply for failures."""
    stmt = (
        select(Delivery, Subscriber.email)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)  # type: ignore[arg-type]
        .order_by(Delivery.id.desc())  # type: ignore[union-attr]
        .limit(limit)
    )
    if status:
        stmt = stmt.where(Delivery.status == status)
    return [
        DeliveryRow(
            id=d.id,  # type: ignore[arg-type]
            email=email,
            period=d.period,
            status=d.status,
            attempts=d.attempts,
            entry_count=d.entry_count,
            due_at=d.due_at,
            next_attempt_at=d.next_attempt_at,
            sent_at=d.sent_at,
            message_id=d.message_id,
            error=d.error,
        )
        for d, email in session.execute(stmt).all()
    ]


def sent_delivery(session: Session, subscriber_id: int, period: str) -> Delivery | None:
    """A subscriber's digest of one period, if it was sent ("View in browser")."""
    return session.scalars(
        select(Delivery).where(
            Delivery.subscriber_id == subscriber_id,
            Delivery.period == period,
            Delivery.status == "sent",
        )
    ).first()


def delivered_entries(session: Session, delivery_id: int) -> list[Entry]:
    """The entries a delivery carried, in the order it showed them. One query."""
    return list(
        session.scalars(
            select(Entry)
            .join(DeliveryEntry, DeliveryEntry.entry_id == Entry.id)  # type: ignore[arg-type]
            .where(DeliveryEntry.delivery_id == delivery_id)
            .order_by(DeliveryEntry.rank)  # type: ignore[arg-type]
        )
    )


def retry_now(session: Session, now: datetime, *, failed: bool = False) -> int:
    """Make deliveries claimable at once: those waiting in `retry`, or (with `failed`) only
    the failed ones, with a fresh set of attempts. Returns how many."""
    if failed:
        stmt = (
            update(Delivery)
            .where(Delivery.status == "failed")
            .values(status="retry", attempts=0, next_attempt_at=now)
        )
    else:
        stmt = (
            update(Delivery)
            .where(
                or_(
                    Delivery.status == "retry",
                    and_(Delivery.status == "pending", Delivery.next_attempt_at > now),  # type: ignore[operator]
                )
            )
            .values(next_attempt_at=now)
        )
    result = session.execute(stmt.execution_options(synchronize_session=False))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def send_due(ctx: AppContext, *, worker_id: str, stop: Any = None) -> Any:
    """Claim and send everything due (implemented in `digestd.sending`; kept here for callers
    that treat the outbox as the one place to drive deliveries)."""
    from digestd.sending import send_due as _send_due  # sending imports this module

    return await _send_due(ctx, worker_id=worker_id, stop=stop)
