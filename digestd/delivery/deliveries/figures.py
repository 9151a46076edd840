"""The delivery figures of `digestd stats` and of the progress bar: per day and status, and
what is waiting."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, select
from sqlmodel import Session, col

from digestd.core.db import sql_date
from digestd.core.models import Delivery
from digestd.core.statuses import CLAIMABLE, DeliveryStatus
from digestd.delivery.deliveries.columns import aware
from digestd.delivery.deliveries.views import DeliveryRow, rows_of, with_email

D = DeliveryStatus


@dataclass(frozen=True)
class DayCount:
    """Deliveries of one UTC day (sent: by when sent; others: by when due), one status and
    one severity of the last failure they met (None: none met)."""

    day: date
    status: DeliveryStatus
    severity: str | None  # a core.failures.Severity value
    count: int


def counts_per_day(session: Session, since: datetime, until: datetime) -> list[DayCount]:
    """Deliveries per UTC day, status and failure severity in [since, until): one grouped
    query for `stats`."""
    when = func.coalesce(col(Delivery.sent_at), col(Delivery.due_at), col(Delivery.created_at))
    day = func.date(when)
    status, severity = col(Delivery.status), col(Delivery.severity)
    stmt = (
        select(day, status, severity, func.count())
        .where(when >= since, when < until)
        .group_by(day, status, severity)
    )
    return [
        DayCount(sql_date(d), DeliveryStatus(st), sev, int(n))
        for d, st, sev, n in session.execute(stmt)
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
