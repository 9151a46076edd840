"""The delivery store's views and admin actions: `deliveries list/show`, "View in browser",
finding the delivery a bounce names, the queue's counts, retrying and forgetting."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlmodel import Session, col

from digestd.core.db import chunks
from digestd.core.models import Delivery, Entry, Subscriber
from digestd.core.statuses import CLAIMABLE, DeliveryStatus
from digestd.delivery.deliveries.columns import IN_CHUNK, rowcount, split_ids, split_reasons

D = DeliveryStatus


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
    error: str | None  # the last failure's words (kept once sent), or a skip's reason
    # The last failure as data (see core/failures.py); None when none was met.
    smtp_code: int | None = None
    enhanced_status: str | None = None
    severity: str | None = None
    resend_of: int | None = None  # the delivery whose digest this one sends again


def rows_of(session: Session, stmt: Any) -> list[DeliveryRow]:
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
            smtp_code=d.smtp_code,
            enhanced_status=d.enhanced_status,
            severity=d.severity,
            resend_of=d.resend_of,
        )
        for d, email in session.execute(stmt).all()
    ]


def with_email() -> Any:
    return select(Delivery, col(Subscriber.email)).join(
        Subscriber, col(Subscriber.id) == col(Delivery.subscriber_id)
    )


def list_deliveries(
    session: Session,
    *,
    status: DeliveryStatus | None = None,
    subscriber_id: int | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[DeliveryRow]:
    """The newest deliveries (optionally of one status, one subscriber, planned since an
    instant), with the server's reply for failures."""
    stmt = with_email().order_by(col(Delivery.id).desc()).limit(limit)
    if since is not None:
        stmt = stmt.where(col(Delivery.created_at) >= since)
    if status is not None:
        stmt = stmt.where(col(Delivery.status) == status)
    if subscriber_id is not None:
        stmt = stmt.where(col(Delivery.subscriber_id) == subscriber_id)
    return rows_of(session, stmt)


def get(session: Session, delivery_id: int) -> DeliveryRow | None:
    """One delivery by id, or None."""
    found = rows_of(session, with_email().where(col(Delivery.id) == delivery_id))
    return found[0] if found else None


def sent_for_period(session: Session, subscriber_id: int, period: str) -> DeliveryRow | None:
    """A subscriber's digest of one period, if it was sent ("View in browser"), or None."""
    found = rows_of(
        session,
        with_email()
        .where(
            Delivery.subscriber_id == subscriber_id,
            Delivery.period == period,
            Delivery.status == D.SENT,
        )
        .order_by(col(Delivery.id))  # the first send (a resend repeats its papers)
        .limit(1),
    )
    return found[0] if found else None


def find_by_message_id(session: Session, message_id: str) -> DeliveryRow | None:
    """The delivery that carried this Message-ID (`<…>` included), or None."""
    found = rows_of(session, with_email().where(col(Delivery.message_id) == message_id.strip()))
    return found[0] if found else None


def waiting_for(session: Session, subscriber_id: int) -> DeliveryRow | None:
    """A subscriber's newest delivery not done yet (pending, retry or sending): the digest
    they get next, which `digestd preview` shows."""
    found = rows_of(
        session,
        with_email()
        .where(
            col(Delivery.subscriber_id) == subscriber_id,
            col(Delivery.status).in_((*CLAIMABLE, D.SENDING)),
        )
        .order_by(col(Delivery.id).desc())
        .limit(1),
    )
    return found[0] if found else None


def carried_reasons(session: Session, delivery_id: int) -> dict[int, str]:
    """The reason a sent delivery showed beside each of its papers (entry id → words), as
    it was mailed; empty for a digest sent before reasons were stored."""
    row = session.execute(
        select(col(Delivery.entry_ids), col(Delivery.reasons)).where(
            col(Delivery.id) == delivery_id
        )
    ).first()
    if row is None:
        return {}
    ids, reasons = split_ids(row[0], delivery_id), split_reasons(row[1], delivery_id)
    if len(ids) != len(reasons):
        return {}
    return dict(zip(ids, reasons, strict=True))


def entry_ids(session: Session, delivery_id: int) -> list[int]:
    """The papers a delivery carried, in rank order."""
    return split_ids(
        session.scalar(select(col(Delivery.entry_ids)).where(col(Delivery.id) == delivery_id)),
        delivery_id,
    )


def latest_per_subscriber(session: Session) -> list[tuple[DeliveryRow, str]]:
    """Each subscriber's newest delivery with the title of its top paper ("" if none), by
    address (the demo's summary table)."""
    newest = (
        select(func.max(col(Delivery.id))).group_by(col(Delivery.subscriber_id)).scalar_subquery()
    )
    rows = rows_of(
        session,
        with_email().where(col(Delivery.id).in_(newest)).order_by(col(Subscriber.email)),
    )
    carried = dict(
        session.execute(
            select(col(Delivery.id), col(Delivery.entry_ids)).where(
                col(Delivery.id).in_([r.id for r in rows])
            )
        ).all()
    )
    first = {d: ids[0] for d, ids in ((d, split_ids(t, d)) for d, t in carried.items()) if ids}
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
    return rowcount(session.execute(stmt.execution_options(synchronize_session=False)))


def forget_subscriber(session: Session, subscriber_id: int) -> int:
    """Delete a subscriber's deliveries (with the papers each carried); returns how many."""
    return rowcount(
        session.execute(delete(Delivery).where(col(Delivery.subscriber_id) == subscriber_id))
    )


def latest_sent(session: Session, subscriber_id: int) -> DeliveryRow | None:
    """A subscriber's newest delivery that went out (a bounce that names only an address)."""
    found = rows_of(
        session,
        with_email()
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
