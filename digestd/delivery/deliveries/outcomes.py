"""Recording what happened to claimed deliveries: `Outcome`, the retry rule, and `record`.

A failure is written as data (the SMTP reply code, the enhanced status code and the
severity, from the `Failure` read where it happened) beside `error`, the server's words
for people. A delivery keeps its last failure once it is sent (or handed back unattempted):
the row says it met one on the way, and `digestd stats` counts it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, case, func, select, update
from sqlmodel import Session

from digestd.core.failures import Failure
from digestd.core.statuses import DeliveryStatus
from digestd.delivery.deliveries.bulk import executemany
from digestd.delivery.deliveries.columns import TABLE, joined_ids, joined_reasons
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
    failure: Failure | None = None  # retry and failed: what went wrong, as data
    reasons: tuple[str, ...] = ()  # sent: the reason shown beside each paper, as entry_ids


def backoff(attempts: int) -> timedelta:
    """Delay before the next try after `attempts` failed ones: 10, 20, 40 … min, capped."""
    return min(RETRY_BASE * (1 << max(0, attempts - 1)), RETRY_CAP)


def temporary_failure(claim: Claim, reply: str, failure: Failure | None = None) -> Outcome:
    """A 4xx, a dropped connection or one of our own failures: retry later, or fail once
    attempts are used up (the failure is then the last attempt's)."""
    if claim.attempts >= MAX_ATTEMPTS:
        text = f"gave up after {claim.attempts} attempts: {reply}"
        return Outcome(claim, D.FAILED, text, failure=failure)
    return Outcome(claim, D.RETRY, reply, failure=failure)


# Everyone who got one digest shares its papers and reasons, and a pass's groups share
# digests: each one's column text is made once and kept (bounded; lru_cache is thread-safe,
# and the recorder's commits run in a worker thread).
_papers_text = lru_cache(maxsize=1024)(joined_ids)
_reasons_text = lru_cache(maxsize=1024)(joined_reasons)


def record(
    session: Session, outcomes: Sequence[Outcome], *, worker_id: str, now: datetime
) -> list[int]:
    """Write a group of outcomes in one executemany (a sent one's papers on its own row);
    returns the ids of the deliveries it did not write.

    Writes only rows this worker still holds (`sending`, claimed_by = worker): if the lease
    ran out and another worker took the row over, that worker's record wins, and the id is
    returned (as is one recorded already, by a commit whose answer was lost). The driver's
    count says whether every row was written; only when one was not (rare) are the rows
    read back to name it: no statement more in the common case (a read first cost half as
    much again as the recording: benchmarks/README.md).
    """
    if not outcomes:
        return []
    rows = []
    for o in outcomes:
        next_at = None
        if o.status == D.RETRY:
            next_at = now + backoff(o.claim.attempts)
        elif o.status == D.PENDING:  # claimed but not attempted (a stop): claimable again
            next_at = now
        sent = o.status == D.SENT
        f = o.failure
        ids_text = _papers_text(tuple(o.entry_ids)) if sent else ""
        why_text = _reasons_text(o.reasons) if sent else ""
        rows.append(
            (
                o.claim.id,
                o.status.value,
                None if sent else (o.error or None),
                next_at,
                now if sent else None,
                len(o.entry_ids) if sent else 0,
                ids_text,
                worker_id,
                0 if f is None else 1,
                None if f is None else f.code,
                None if f is None else (f.status or None),
                None if f is None else str(f.severity),
                why_text,
            )
        )
    if executemany(session, _record_statement, _RECORD_NAMES, rows) == len(rows):
        return []
    return _not_written(session, outcomes)


def _not_written(session: Session, outcomes: Sequence[Outcome]) -> list[int]:
    """The outcomes `record` did not write, read back in its transaction: a row it wrote has
    no holder and the outcome's status; another worker's still has its holder, or a status
    of its own. (A row another worker recorded with the very same status is told apart by
    nothing and left out: the warning then names one delivery fewer.)"""
    found = {
        row_id: (status, holder)
        for row_id, status, holder in session.execute(
            select(TABLE.c.id, TABLE.c.status, TABLE.c.claimed_by).where(
                TABLE.c.id.in_([o.claim.id for o in outcomes])
            )
        )
    }
    return [
        o.claim.id
        for o in outcomes
        if o.claim.id not in found
        or found[o.claim.id][1] is not None
        or found[o.claim.id][0] != o.status
    ]


_RECORD_NAMES = (
    "b_id",
    "b_status",
    "b_error",
    "b_next",
    "b_sent",
    "b_count",
    "b_ids",
    "b_worker",
    "b_failed",
    "b_code",
    "b_enhanced",
    "b_severity",
    "b_reasons",
)


def _record_statement(dialect: Any) -> Any:
    # An outcome with a failure writes its three fields (NULL included: a failure of ours
    # has no reply code); one without (sent, skipped, handed back) keeps the last failure,
    # and `error` keeps its words unless the outcome brings its own (a skip's reason).
    failed = bindparam("b_failed") == 1
    return (
        update(TABLE)
        .where(
            TABLE.c.id == bindparam("b_id"),
            TABLE.c.status == D.SENDING.value,
            TABLE.c.claimed_by == bindparam("b_worker"),
        )
        .values(
            status=bindparam("b_status"),
            error=func.coalesce(bindparam("b_error", type_=TABLE.c.error.type), TABLE.c.error),
            next_attempt_at=bindparam("b_next", type_=TABLE.c.next_attempt_at.type),
            sent_at=bindparam("b_sent", type_=TABLE.c.sent_at.type),
            entry_count=bindparam("b_count"),
            entry_ids=bindparam("b_ids"),
            reasons=bindparam("b_reasons"),
            smtp_code=case(
                (failed, bindparam("b_code", type_=TABLE.c.smtp_code.type)), else_=TABLE.c.smtp_code
            ),
            enhanced_status=case(
                (failed, bindparam("b_enhanced", type_=TABLE.c.enhanced_status.type)),
                else_=TABLE.c.enhanced_status,
            ),
            severity=case(
                (failed, bindparam("b_severity", type_=TABLE.c.severity.type)),
                else_=TABLE.c.severity,
            ),
            lease_until=None,
            claimed_by=None,
        )
    )
