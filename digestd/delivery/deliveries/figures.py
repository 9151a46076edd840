"""The delivery figures of `digestd stats` and of the progress bar: per day and status, and
what is waiting."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import and_, case, func, or_, select
from sqlmodel import Session, col

from digestd.core.db import sql_date
from digestd.core.models import Delivery
from digestd.core.statuses import CLAIMABLE, DeliveryStatus
from digestd.delivery.deliveries.columns import aware
from digestd.delivery.deliveries.views import DeliveryRow, rows_of, with_email

D = DeliveryStatus


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
        with_email()
        .where(col(Delivery.status).in_(CLAIMABLE), col(Delivery.next_attempt_at) <= now)
        .order_by(func.coalesce(col(Delivery.due_at), col(Delivery.created_at)), col(Delivery.id))
        .limit(1)
    )
    found = rows_of(session, stmt)
    return found[0] if found else None


def waiting(session: Session, now: datetime) -> tuple[int, datetime | None]:
    """How many deliveries are due and claimable now, and since when the oldest has been
    (a delivery due long ago and still unclaimed means sending is stuck or falling behind)."""
    stmt = select(func.count(), func.min(Delivery.next_attempt_at)).where(
        col(Delivery.status).in_(CLAIMABLE),
        col(Delivery.next_attempt_at) <= now,
    )
    count, oldest = session.execute(stmt).one()
    return int(count), aware(oldest)
