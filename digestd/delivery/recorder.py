"""Group commits of send outcomes: what the SMTP server accepted is recorded soon after.

A crash (SIGKILL, power loss) re-sends exactly the messages that were accepted by the server
but not yet recorded as sent: their rows are still `sending` and come back when the lease
expires, with the same Message-ID. This module bounds that number:

- a sender takes a credit before each message (`before_send`) and the credit comes back
  only once the message's outcome is committed, so at most `UNRECORDED_MAX` messages are
  ever on the wire or accepted-but-unrecorded: a crash re-sends at most that many;
- outcomes are committed in groups of at most `GROUP_MAX`, started when `FLUSH_AT` are
  waiting (half the credits: sending goes on during the commit) or `GROUP_SECONDS` after
  the oldest waiting one, whichever comes first. One group commit runs at a time, in a
  worker thread, so the event loop keeps sending.

At the end of a pass `close` commits what is left; a pass that is cancelled uses `settle`
(see sending.send_due); a pass that failed (the database went away) takes what was not
committed with `unsaved` and hands it over to `handback`, which writes it as soon as the
database answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from datetime import datetime

from sqlmodel import Session

from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.statuses import DeliveryStatus
from digestd.delivery import deliveries
from digestd.delivery.deliveries import Outcome
from digestd.subscribers import bounce_policy

log = logging.getLogger(__name__)

UNRECORDED_MAX = 64  # messages on the wire or accepted but not committed, at most
GROUP_MAX = 64  # outcomes per commit, at most
FLUSH_AT = UNRECORDED_MAX // 2
GROUP_SECONDS = 0.2  # the longest an outcome waits for its commit to start

Recorded = Callable[[Sequence[Outcome], list[int]], None]


def record_group(ctx: AppContext, outcomes: Sequence[Outcome], worker_id: str) -> list[int]:
    """Commit outcomes and what they say about subscribers in one transaction; returns the
    ids of subscribers newly marked bounced. Outcomes of deliveries this worker no longer
    holds are not written (their new holder records them): a warning names them, and the
    metric `digestd_outcomes_unwritten` counts them."""
    now = ctx.now()
    with session_scope(ctx.engine) as session:
        bounced, unwritten = write_outcomes(ctx, session, outcomes, worker_id, now)
    report_unwritten(ctx, worker_id, unwritten)
    return bounced


def write_outcomes(
    ctx: AppContext, session: Session, outcomes: Sequence[Outcome], worker_id: str, now: datetime
) -> tuple[list[int], list[int]]:
    """Write outcomes and apply what they say about subscribers, in the caller's transaction;
    returns (subscribers newly bounced, deliveries not written: no longer this worker's)."""
    unwritten = deliveries.record(session, outcomes, worker_id=worker_id, now=now)
    skip = set(unwritten)
    # A refusal is read by the bounce policy, like a bounce that comes back by mail.
    # Acceptance does not reset the soft-bounce count: with a relay, the bounce comes
    # later (the policy's own quiet-gap rule starts the count over).
    failures = {
        o.claim.subscriber_id: (o.failure, o.error or "")
        for o in outcomes
        if o.status == DeliveryStatus.FAILED and o.failure is not None and o.claim.id not in skip
    }
    bounced = bounce_policy.apply_send_failures(
        session, failures, ctx.settings, actor=ctx.actor, now=now
    )
    return bounced, unwritten


def report_unwritten(ctx: AppContext, worker_id: str, unwritten: Sequence[int]) -> None:
    """A warning naming the deliveries whose outcomes were not written, and the metric."""
    if not unwritten:
        return
    ids = sorted(unwritten)
    log.warning(
        "%d outcomes not recorded: deliveries %s are no longer held by worker %s "
        "(a lease ran out and another worker took them over, or they were recorded "
        "already)",
        len(ids),
        ",".join(map(str, ids[:20])) + (" …" if len(ids) > 20 else ""),
        worker_id,
        extra={"worker": worker_id, "unwritten": len(ids)},
    )
    ctx.metrics.outcomes_unwritten(len(ids))


class Recorder:
    """Collects outcomes from concurrent senders and commits them in bounded groups."""

    def __init__(
        self,
        ctx: AppContext,
        worker_id: str,
        on_recorded: Recorded,
        executor: Executor | None = None,
    ) -> None:
        self._ctx = ctx
        self._executor = executor  # where commits run (None: the loop's default executor)
        self._worker_id = worker_id
        self._on_recorded = on_recorded
        self._waiting: list[tuple[Outcome, bool]] = []  # (outcome, holds a credit)
        self._oldest = 0.0  # monotonic time the oldest waiting outcome arrived
        self._credits = asyncio.Semaphore(UNRECORDED_MAX)
        self._flusher: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.error: BaseException | None = None  # a failed commit stops the pass
        self._unrecorded = 0  # credits taken: on the wire or accepted, not yet committed
        self.unrecorded_peak = 0  # what a crash at the worst moment of this pass re-sends

    async def before_send(self) -> None:
        """Wait until one more message may go out without exceeding UNRECORDED_MAX."""
        if self.error is not None:
            raise self.error
        await self._credits.acquire()
        if self.error is not None:
            self._credits.release()
            raise self.error
        self._unrecorded += 1
        self.unrecorded_peak = max(self.unrecorded_peak, self._unrecorded)

    def add(self, outcome: Outcome, *, credit: bool) -> None:
        """Queue one outcome for the next group commit (`credit`: it took one to be sent)."""
        if not self._waiting:
            self._oldest = time.monotonic()
        self._waiting.append((outcome, credit))
        if self.error is not None:
            return  # a failed commit ended the pass: kept for `unsaved`
        if len(self._waiting) >= FLUSH_AT:
            self._start()
        elif self._timer is None and (self._flusher is None or self._flusher.done()):
            self._arm()

    def _arm(self) -> None:
        delay = max(0.0, self._oldest + GROUP_SECONDS - time.monotonic())
        self._timer = asyncio.get_running_loop().call_later(delay, self._start)

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._waiting and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        """Commit groups while enough is waiting; leave a small rest to the timer."""
        while self._waiting and self.error is None:
            group = self._waiting[:GROUP_MAX]
            del self._waiting[:GROUP_MAX]
            if self._waiting:
                self._oldest = time.monotonic()
            outcomes = [o for o, _ in group]
            try:
                # This task is not the pass's: cancelling a pass never interrupts a commit
                # (settle waits for it).
                bounced = await asyncio.get_running_loop().run_in_executor(
                    self._executor, record_group, self._ctx, outcomes, self._worker_id
                )
            except Exception as exc:
                self.error = exc
                # Kept, in order: a failed pass hands them over (`unsaved`, handback.py).
                self._waiting[:0] = group
                # Wake every waiting sender: they see the error and stop.
                for _ in range(UNRECORDED_MAX):
                    self._credits.release()
                return
            self._on_recorded(outcomes, bounced)
            for _ in range(sum(1 for _, credit in group if credit)):
                self._unrecorded -= 1
                self._credits.release()
            if len(self._waiting) < FLUSH_AT:
                break
        if self._waiting and self.error is None:
            self._arm()

    async def close(self) -> None:
        """Commit everything still waiting (end of a pass); re-raises a failed commit."""
        while True:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._flusher is not None and not self._flusher.done():
                await self._flusher
            if self.error is not None:
                raise self.error
            if not self._waiting:
                return
            self._flusher = asyncio.ensure_future(self._flush())

    async def unsaved(self) -> list[Outcome]:
        """After a failed pass: wait for a commit under way, then take every outcome not
        committed (those of a failed commit included), in order, for the hand-back."""
        if self._flusher is not None and not self._flusher.done():
            with contextlib.suppress(BaseException):
                await asyncio.shield(self._flusher)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.error is None:  # no more commits from here: the hand-back writes these
            self.error = RuntimeError("the send pass failed")
        outcomes = [o for o, _ in self._waiting]
        self._waiting.clear()
        return outcomes

    async def settle(self) -> None:
        """After a cancelled pass: wait for a running commit, then commit the rest here, in
        the loop thread (it must happen even if the caller is cancelled again)."""
        if self._flusher is not None and not self._flusher.done():
            with contextlib.suppress(BaseException):
                await asyncio.shield(self._flusher)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiting:
            group = self._waiting[:GROUP_MAX]
            del self._waiting[:GROUP_MAX]
            outcomes = [o for o, _ in group]
            self._on_recorded(outcomes, record_group(self._ctx, outcomes, self._worker_id))
