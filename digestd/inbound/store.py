"""Every query on the `inbound` table: recording what came in, and listing it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select as sa_select
from sqlmodel import Session, col, func, select

from digestd.core.db import sql_date
from digestd.core.models import Inbound, Subscriber

MAX_HEADER_CHARS = 16_000  # of the stored header copy, all fields together


def cap_headers(headers: list[list[str]]) -> list[list[str]]:
    """The header copy we keep: whole fields, in order, until MAX_HEADER_CHARS."""
    out: list[list[str]] = []
    used = 0
    for name, value in headers:
        used += len(name) + len(value)
        if used > MAX_HEADER_CHARS:
            out.append(["X-Digestd-Truncated", f"{len(headers) - len(out)} more fields"])
            break
        out.append([name, value])
    return out


def _storable(value: Any) -> Any:
    """Text as PostgreSQL can store it: a NUL byte (hostile or broken mail has them; text
    and JSON columns refuse them) becomes U+FFFD, in strings, lists and dicts alike."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    if isinstance(value, dict):
        return {k: _storable(v) for k, v in value.items()}
    return value


def record(session: Session, **values: Any) -> Inbound:
    """Add one inbound row (the caller commits); headers are capped here."""
    values["headers"] = cap_headers(values.get("headers") or [])
    row = Inbound(**{name: _storable(value) for name, value in values.items()})
    session.add(row)
    session.flush()
    return row


def list_inbound(
    session: Session, *, kind: str | None = None, limit: int = 100
) -> list[tuple[Inbound, str | None]]:
    """The newest inbound records (optionally of one kind) with their subscriber's address."""
    stmt = (
        select(Inbound, Subscriber.email)
        .join(Subscriber, col(Subscriber.id) == col(Inbound.subscriber_id), isouter=True)
        .order_by(col(Inbound.id).desc())
        .limit(limit)
    )
    if kind:
        stmt = stmt.where(Inbound.kind == kind)
    return [(row, email) for row, email in session.exec(stmt).all()]


def get_inbound(session: Session, inbound_id: int) -> tuple[Inbound, str | None] | None:
    """One inbound record with its subscriber's address (`digestd inbound show`), or None."""
    stmt = (
        select(Inbound, Subscriber.email)
        .join(Subscriber, col(Subscriber.id) == col(Inbound.subscriber_id), isouter=True)
        .where(col(Inbound.id) == inbound_id)
    )
    found = session.exec(stmt).first()
    return (found[0], found[1]) if found else None


def for_subscriber(session: Session, subscriber_id: int, limit: int = 10) -> list[Inbound]:
    """The newest inbound mail about one subscriber (`digestd subscribers show`)."""
    stmt = (
        select(Inbound)
        .where(col(Inbound.subscriber_id) == subscriber_id)
        .order_by(col(Inbound.id).desc())
        .limit(limit)
    )
    return list(session.exec(stmt).all())


def inbound_dict(row: Inbound, email: str | None) -> dict[str, Any]:
    """The public JSON view of one record (`digestd inbound list --json`)."""

    def ts(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": row.id,
        "received_at": ts(row.received_at),
        "kind": row.kind,
        "source": row.source,
        "subscriber": email,
        "delivery": row.delivery_id,
        "address": row.address,
        "status": row.status_code,
        "severity": row.severity,
        "reason": row.reason,
        "summary": row.summary,
        "effect": row.effect,
        "evidence": row.evidence or None,
        "recipients": row.recipients,
    }


def replies_to(session: Session, address: str, since: datetime) -> int:
    """How many commands from this address were answered since `since` (the reply limit)."""
    from sqlmodel import func

    stmt = (
        select(func.count())
        .select_from(Inbound)
        .where(
            Inbound.kind == "command",
            Inbound.address == address,
            col(Inbound.received_at) >= since,
            col(Inbound.effect).contains("sent"),
        )
    )
    return int(session.exec(stmt).one())


def for_delivery(session: Session, delivery_id: int) -> list[Inbound]:
    """What came back about one delivery (bounces, complaints, replies), oldest first."""
    stmt = (
        select(Inbound)
        .where(col(Inbound.delivery_id) == delivery_id)
        .order_by(col(Inbound.received_at), col(Inbound.id))
    )
    return list(session.exec(stmt).all())


@dataclass(frozen=True)
class KindCount:
    """Inbound records of one UTC day, kind and severity (`digestd stats`); `matched`: tied
    to a subscriber (what matched none is not the list's and is counted apart)."""

    day: date
    kind: str
    severity: str
    count: int
    matched: bool = True


def counts_per_day(
    session: Session, since: datetime, until: datetime, kinds: tuple[str, ...]
) -> list[KindCount]:
    """Inbound records per UTC day, kind, severity and whether they matched a subscriber in
    [since, until), of these kinds."""
    received = col(Inbound.received_at)
    day = func.date(received)
    matched = col(Inbound.subscriber_id).is_not(None)
    stmt = (
        sa_select(day, col(Inbound.kind), col(Inbound.severity), matched, func.count())
        .where(received >= since, received < until, col(Inbound.kind).in_(kinds))
        .group_by(day, col(Inbound.kind), col(Inbound.severity), matched)
    )
    return [
        KindCount(sql_date(d), kind, severity or "", int(n), bool(found))
        for d, kind, severity, found, n in session.execute(stmt)
    ]
