"""Claims and their leases: `claim` (take a batch), `renew` (extend it), `release` (hand it
back), and who holds a claim (`new_worker_id`).

Exclusivity: a claim moves rows to `sending` with `lease_until`; on PostgreSQL the rows are
picked with `FOR UPDATE SKIP LOCKED` so replicas never claim the same row, on SQLite the
claim is one `BEGIN IMMEDIATE` transaction (single writer). A worker that dies leaves rows
in `sending`; `release` hands them back once the lease has run out, and the Message-ID
(fixed at planning) stays, so a resend is recognisably the same message.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import and_, select, type_coerce, update
from sqlalchemy.types import NullType
from sqlmodel import Session, col

from digestd.core.models import Delivery
from digestd.core.statuses import CLAIMABLE, DeliveryStatus
from digestd.delivery.deliveries.columns import TABLE, rowcount

D = DeliveryStatus


def new_worker_id() -> str:
    """host:pid:random: who holds a claim, unique per process and run, readable in
    `deliveries list` and logs."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


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
    resend_of: int | None = None  # a resend: the delivery whose papers it carries again


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
            # As the driver gives them, read by `_instants` (once per distinct value).
            type_coerce(col(Delivery.window_start), NullType()).label("window_start"),
            type_coerce(col(Delivery.window_end), NullType()).label("window_end"),
            col(Delivery.message_id),
            col(Delivery.attempts),
            col(Delivery.resend_of),
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
    instant = _instants(session.get_bind().dialect)
    return [
        Claim(
            id=row_id,
            subscriber_id=subscriber_id,
            period=period,
            window_start=instant(start) or now,
            window_end=instant(end) or now,
            message_id=message_id,
            attempts=attempts + 1,
            resend_of=resend_of,
        )
        for row_id, subscriber_id, period, start, end, message_id, attempts, resend_of in rows
    ]


def _instants(dialect: Any) -> Callable[[Any], datetime | None]:
    """The window columns' own reading of a value (the dialect's, then UTCDateTime's), done
    once per distinct value: the deliveries of a batch share one or two windows, and reading
    every row's two instants was half of a claim's reading (500 rows: 23 -> 12 us a row)."""
    read = TABLE.c.window_start.type.dialect_impl(dialect).result_processor(dialect, None)
    done: dict[Any, datetime | None] = {None: None}

    def instant(value: Any) -> datetime | None:
        found = done.get(value, _UNREAD)
        if found is _UNREAD:
            found = done[value] = read(value) if read is not None else value
        return cast("datetime | None", found)

    return instant


_UNREAD = object()


def release(session: Session, now: datetime, *, worker_id: str | None = None) -> int:
    """Hand claims back to pending, claimable at once; returns how many.

    Without `worker_id`: every claim whose lease ran out (a dead worker). With it: that
    worker's unfinished claims (a graceful stop, or a pass that failed) — only rows still
    `sending` under this id match, so a delivery recorded meanwhile, or re-claimed by
    another worker after an expiry, is never touched. The Message-ID stays, so a message
    the server accepted just before the stop is a same-ID duplicate.
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
    return rowcount(result)


def renew(session: Session, worker_id: str, now: datetime, lease_seconds: int) -> int:
    """Extend the leases of the deliveries this worker still holds (a long send pass: a
    slow server or DIGESTD_SMTP_RATE), so housekeeping never hands back, and a second
    claim never re-sends, a delivery that is still on its way; returns how many.

    Rows being recorded meanwhile are skipped on PostgreSQL (SKIP LOCKED), never waited
    for: the recorder's transaction and this one touch the same rows in different orders.
    """
    held = and_(TABLE.c.status == D.SENDING.value, TABLE.c.claimed_by == worker_id)
    ids = select(TABLE.c.id).where(held)
    if session.get_bind().dialect.name == "postgresql":
        ids = ids.with_for_update(skip_locked=True)
    result = session.execute(
        update(TABLE)
        .where(TABLE.c.id.in_(ids.scalar_subquery()), held)
        .values(lease_until=now + timedelta(seconds=lease_seconds))
    )
    return rowcount(result)
