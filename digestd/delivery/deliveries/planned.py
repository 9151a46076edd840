"""Planning's statements: inserting due deliveries, each with its Message-ID fixed once.

Idempotency: the unique (subscriber, period) key plus INSERT … ON CONFLICT DO NOTHING means
planning twice, in two processes or after a restart, never creates a second delivery.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from digestd.core.statuses import DeliveryStatus
from digestd.delivery.deliveries.bulk import executemany
from digestd.delivery.deliveries.columns import TABLE


def message_id_domain(from_address: str) -> str:
    """The domain of DIGESTD_FROM, for Message-IDs (`localhost` when it has none)."""
    _, addr = parseaddr(from_address)
    domain = addr.rpartition("@")[2].strip().lower()
    return domain or "localhost"


def new_message_id(period: str, subscriber_id: int, domain: str) -> str:
    """A unique Message-ID, fixed at planning and reused by every attempt."""
    return f"<digest.{period}.{subscriber_id}.{secrets.token_hex(6)}@{domain}>"


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
    "reasons",
)


def plan(session: Session, rows: Sequence[NewDelivery], *, now: datetime) -> int:
    """Insert due deliveries, skipping (subscriber, period) pairs that exist; returns how many
    were new. INSERT … ON CONFLICT DO NOTHING: a concurrent planner adds nothing twice."""
    if not rows:
        return 0
    # Through the driver's executemany (`bulk.executemany`): SQLAlchemy's per-row parameter
    # handling (five datetimes a row, each through two bind processors) was 40 % of
    # planning. The driver counts only the rows it inserted, not those ON CONFLICT skipped.
    # inline(): no implicit RETURNING of the new id (PostgreSQL), which executemany drops.
    return executemany(
        session,
        _plan_statement,
        _PLAN_COLUMNS,
        [
            (
                r.subscriber_id,
                r.period,
                DeliveryStatus.PENDING.value,
                r.window_start,
                r.window_end,
                r.due_at,
                0,
                now,
                r.message_id,
                0,
                "",
                now,
                "",
            )
            for r in rows
        ],
    )


def _plan_statement(dialect: Any) -> Any:
    insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
    return (
        insert(TABLE)
        .inline()
        # The unique index over first sends (resend_of IS NULL, migration 0016).
        .on_conflict_do_nothing(
            index_elements=["subscriber_id", "period"],
            index_where=TABLE.c.resend_of.is_(None),
        )
        .values({name: bindparam(name, type_=TABLE.c[name].type) for name in _PLAN_COLUMNS})
    )


def plan_resend(session: Session, original_id: int, *, now: datetime, domain: str) -> int | None:
    """A new delivery that sends the digest of `original_id` again (same papers and window,
    a new Message-ID), due now; its id, or None when there is no such delivery. The papers
    are read from the original when it is sent (`batches.prepare`)."""
    row = session.execute(
        select(
            TABLE.c.subscriber_id, TABLE.c.period, TABLE.c.window_start, TABLE.c.window_end
        ).where(TABLE.c.id == original_id)
    ).first()
    if row is None:
        return None
    result = session.execute(
        insert(TABLE)
        .values(
            subscriber_id=row.subscriber_id,
            period=row.period,
            status=DeliveryStatus.PENDING.value,
            window_start=row.window_start,
            window_end=row.window_end,
            due_at=now,
            attempts=0,
            next_attempt_at=now,
            message_id=new_message_id(row.period, row.subscriber_id, domain),
            entry_count=0,
            entry_ids="",
            reasons="",
            created_at=now,
            resend_of=original_id,
        )
        .returning(TABLE.c.id)
    )
    return int(result.scalar_one())
