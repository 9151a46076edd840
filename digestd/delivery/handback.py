"""A send pass that failed hands its claims back as soon as the database answers again.

When the database goes away in the middle of a pass (a PostgreSQL restart, a failover), the
pass stops: the recorder cannot commit, or the next claim fails. The process still knows
everything it holds: the outcomes not committed yet (among them messages the server
accepted: recorded `sent`, so they are never sent again) and its claims (worker id). Rather
than leave them `sending` until their lease runs out (300 s by default: after a restart a
third of a run waited that long), the pass retries, with a bounded backoff, one
transaction that writes those outcomes and hands every other claim of this worker back to
`pending`, claimable at once. It gives up when the leases would run out anyway (then any
worker's housekeeping releases them) or when the pass is cancelled.

Writing only rows the worker still holds (`deliveries.record`, `deliveries.release` with
the worker id) keeps it safe however late it succeeds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.delivery import deliveries
from digestd.delivery.deliveries import Outcome
from digestd.delivery.recorder import Recorded, report_unwritten, write_outcomes

# The send pass's logger: its lines read as the pass's wherever the code lives.
log = logging.getLogger("digestd.delivery.sending")

FIRST_DELAY = 0.25  # seconds before the second try; doubling
MAX_DELAY = 5.0  # so a database that is back is noticed within this


@dataclass(frozen=True)
class HandedBack:
    """What a hand-back did: outcomes written, claims released, seconds it waited."""

    recorded: int
    released: int
    waited: float


def hand_back(
    ctx: AppContext, outcomes: Sequence[Outcome], worker_id: str
) -> tuple[list[int], list[int], int]:
    """One transaction: write the outcomes known, hand the worker's other claims back;
    returns (subscribers newly bounced, deliveries not written, claims released)."""
    now = ctx.now()
    with session_scope(ctx.engine) as session:
        bounced, unwritten = write_outcomes(ctx, session, outcomes, worker_id, now)
        released = deliveries.release(session, now, worker_id=worker_id)
    return bounced, unwritten, released


async def hand_back_when_possible(
    ctx: AppContext,
    outcomes: Sequence[Outcome],
    worker_id: str,
    *,
    failure: BaseException,
    executor: Executor,
    on_recorded: Recorded,
) -> HandedBack | None:
    """`hand_back` as soon as the database answers (tries every FIRST_DELAY doubling to
    MAX_DELAY seconds, for at most a lease); None when it never did."""
    started = time.monotonic()
    deadline = started + ctx.settings.lease_seconds
    log.warning(
        "send pass failed (%s); worker %s hands back its claims as soon as the database "
        "answers (%d outcomes to record, the rest back to pending)",
        _one_line(failure),
        worker_id,
        len(outcomes),
        extra={"worker": worker_id, "outcomes": len(outcomes)},
    )
    loop = asyncio.get_running_loop()
    delay, tries = FIRST_DELAY, 0
    while True:
        tries += 1
        try:
            bounced, unwritten, released = await loop.run_in_executor(
                executor, hand_back, ctx, outcomes, worker_id
            )
            break
        except Exception as exc:
            if time.monotonic() + delay > deadline:
                log.error(
                    "handing back the claims of worker %s failed for %d s (%s); their "
                    "leases bring them back",
                    worker_id,
                    ctx.settings.lease_seconds,
                    _one_line(exc),
                )
                return None
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)
    report_unwritten(ctx, worker_id, unwritten)
    skip = set(unwritten)
    written = [o for o in outcomes if o.claim.id not in skip]
    on_recorded(written, bounced)
    done = HandedBack(len(written), released, time.monotonic() - started)
    log.info(
        "handed back the claims of worker %s: recorded %d outcomes, released %d claims to "
        "pending, after %.1f s and %d tries",
        worker_id,
        done.recorded,
        done.released,
        done.waited,
        tries,
        extra={"worker": worker_id, "recorded": done.recorded, "released": done.released},
    )
    return done


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:300]}"
