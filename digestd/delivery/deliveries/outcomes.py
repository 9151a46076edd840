"""Recording what happened to claimed deliveries: `Outcome`, the retry rule, and `record`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, update
from sqlmodel import Session

from digestd.core.statuses import DeliveryStatus
from digestd.delivery.deliveries.bulk import executemany
from digestd.delivery.deliveries.columns import TABLE, joined_ids
from digestd.delivery.deliveries.leases import Claim

D = DeliveryStatus

# Retries: exponential backoff from RETRY_BASE, at most MAX_ATTEMPTS attempts in all.
# 10 min doubling over 8 attempts spreads the tries over ~21 hours ("about a day").
RETRY_BASE = timedelta(minutes=10)
RETRY_CAP = timedelta(hours=6)
MAX_ATTEMPTS = 8


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
                joined_ids(o.entry_ids) if sent else "",
                worker_id,
            )
        )
    executemany(session, _record_statement, _RECORD_NAMES, rows)


_RECORD_NAMES = ("b_id", "b_status", "b_error", "b_next", "b_sent", "b_count", "b_ids", "b_worker")


def _record_statement(dialect: Any) -> Any:
    return (
        update(TABLE)
        .where(
            TABLE.c.id == bindparam("b_id"),
            TABLE.c.status == D.SENDING.value,
            TABLE.c.claimed_by == bindparam("b_worker"),
        )
        .values(
            status=bindparam("b_status"),
            error=bindparam("b_error"),
            next_attempt_at=bindparam("b_next", type_=TABLE.c.next_attempt_at.type),
            sent_at=bindparam("b_sent", type_=TABLE.c.sent_at.type),
            entry_count=bindparam("b_count"),
            entry_ids=bindparam("b_ids"),
            lease_until=None,
            claimed_by=None,
        )
    )
