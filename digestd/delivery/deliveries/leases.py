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
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, select, update
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
            col(Delivery.window_start),
            col(Delivery.window_end),
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
    return [
        Claim(
            id=r.id,
            subscriber_id=r.subscriber_id,
            period=r.period,
            window_start=r.window_start or now,
            window_end=r.window_end or now,
            message_id=r.message_id,
            attempts=r.attempts + 1,
            resend_of=r.resend_of,
        )
        for r in rows
    ]


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
