"""Sending the due deliveries: claim a batch and prepare it (`batches`: select and render
once per profile, the message built once), fill in each subscriber's values (`compose`,
the one path that builds a digest's message), send over one shared SMTP pool, and record
each outcome soon after the server's reply, in bounded group commits (`recorder.Recorder`).
The next batch is claimed and prepared in a worker thread while one is on the wire. With
DKIM on, the private-key operations run in a signing process (`mail.dkim_offload`).

Memory is bounded by the batch size (DIGESTD_BATCH_SIZE, two batches in hand) and the
digest cache; database work is a few statements per batch and per group commit (never one
per subscriber), and SMTP concurrency equals the pool size.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.statuses import DeliveryStatus
from digestd.delivery import deliveries
from digestd.delivery.batches import (
    EMPTY_REASON,
    Batch,
    Job,
    PassCache,
    claim_and_prepare,
    log_ids,
    short,
)
from digestd.delivery.compose import (
    filled_message,
    personal_links,
    reference_message,
    wire_message,
)
from digestd.delivery.deliveries import Outcome
from digestd.delivery.deliveries import temporary_failure as _temporary
from digestd.delivery.failures import INTERNAL, ours, send_failed
from digestd.delivery.handback import hand_back_when_possible
from digestd.delivery.recorder import Recorder
from digestd.inbound import addresses
from digestd.mail.dkim_offload import OffloadSigner, offload_for
from digestd.mail.mime import format_date, one_line
from digestd.mail.render import Renderer
from digestd.mail.smtp_pool import SendError, SmtpPool

log = logging.getLogger(__name__)

D = DeliveryStatus
__all__ = ["EMPTY_REASON", "SendReport", "send_due"]


class StopSignal(Protocol):
    def is_set(self) -> bool: ...


@dataclass
class SendReport:
    """What one `send_due` pass did."""

    claimed: int = 0
    sent: int = 0
    retry: int = 0
    failed: int = 0
    skipped: int = 0
    released: int = 0  # expired leases of dead workers handed back before sending
    handed_back: int = 0  # claims this pass handed back after it failed (handback.py)
    bounced: int = 0  # subscribers newly marked bounced
    renders: int = 0  # digest bodies rendered (per profile and paper list, not per subscriber)
    # The most messages on the wire or accepted but not yet recorded at once: what a crash at
    # the worst moment of this pass would have sent again (at most recorder.UNRECORDED_MAX).
    unrecorded_peak: int = 0
    problem: str | None = None  # the first retry/failure reason, so an admin sees why
    # Put off (retry) for a failure of ours: the relay down or refusing us, a dropped
    # connection. `send-now` exits 75 (temporary) when there are any.
    put_off_ours: int = 0

    def add(self, outcomes: Sequence[Outcome]) -> None:
        """Count recorded outcomes; keep the first retry/failure reason."""
        for o in outcomes:
            if o.status == D.SENT:
                self.sent += 1
            elif o.status == D.RETRY:
                self.retry += 1
                if o.failure is not None and o.failure.ours:
                    self.put_off_ours += 1
            elif o.status == D.FAILED:
                self.failed += 1
            elif o.status == D.SKIPPED:
                self.skipped += 1
            if o.status in (D.RETRY, D.FAILED) and o.error and self.problem is None:
                self.problem = o.error


async def _send_jobs(
    ctx: AppContext,
    pool: SmtpPool,
    renderer: Renderer,
    jobs: list[Job],
    stop: StopSignal | None,
    recorder: Recorder,
    keep_leases: Callable[[], Awaitable[None]] | None = None,
    offload: OffloadSigner | None = None,
) -> None:
    """Personalize and send with twice `pool.size` senders (while a connection carries one
    message, another sender personalizes the next and waits for a free connection); each
    outcome goes to the recorder as soon as the server answered (committed within a bounded
    group)."""
    s = ctx.settings
    secret = ctx.secret_key
    now = ctx.now()
    date = format_date(now)  # one Date per batch: formatting it per message costs as much
    queue: Iterator[Job] = iter(jobs)

    async def sender() -> None:
        # All senders share one iterator: asyncio runs one at a time between awaits.
        for job in queue:
            c, sub, digest = job.claim, job.sub, job.digest
            if stop is not None and stop.is_set():
                # Not attempted: hand it straight back instead of holding it to lease expiry.
                recorder.add(Outcome(c, D.PENDING, None), credit=False)
                continue
            if keep_leases is not None:
                await keep_leases()  # renewed when due (send_due)
            # At most recorder.UNRECORDED_MAX messages on the wire or accepted-but-unrecorded:
            # the most a crash can re-send.
            await recorder.before_send()
            outcome: Outcome
            try:
                urls = personal_links(ctx, sub, c.period, digest.entry_ids)
                # Bounces name their delivery (VERP); the mailto: unsubscribes this subscriber.
                envelope = addresses.envelope_sender(s, secret, c.id, digest.template.sender)
                # DKIM, when DIGESTD_DKIM_KEY_FILE is set: its RSA beside the loop.
                if offload is None:
                    data = wire_message(digest, sub, c.message_id, urls, date, pool.signer)
                else:
                    filled = filled_message(digest, sub, c.message_id, urls, date)
                    data = None if filled is None else await offload.signed(filled)
                if data is not None:
                    await pool.send_wire(envelope, one_line(sub.email), data)
                else:
                    message = await asyncio.to_thread(
                        reference_message, ctx, renderer, digest, sub, c.message_id, urls, now
                    )
                    await pool.send(message, sender=envelope)
            except SendError as exc:  # read once, here, into data (delivery.failures)
                outcome = send_failed(c, exc)
            except Exception as exc:  # a bad address format, an encoding error: keep going
                log.exception("sending delivery %s failed", c.id, extra=log_ids(c))
                outcome = _temporary(c, f"error: {short(exc)}", ours(INTERNAL))
            else:
                outcome = Outcome(
                    c, D.SENT, None, entry_ids=digest.entry_ids, reasons=digest.reasons
                )
            recorder.add(outcome, credit=True)

    # Every sender finishes before this returns, even when one fails (the recorder's commit
    # failed: the others stop before their next message): a failed pass hands back what it
    # holds only once no message of it can still be on the wire.
    results = await asyncio.gather(
        *(sender() for _ in range(max(1, min(2 * pool.size, len(jobs))))),
        return_exceptions=True,
    )
    for result in results:
        if isinstance(result, BaseException):
            raise result


def _renew(ctx: AppContext, worker_id: str) -> int:
    with session_scope(ctx.engine) as session:
        return deliveries.renew(session, worker_id, ctx.now(), ctx.settings.lease_seconds)


def _renewed(done: asyncio.Future[int]) -> None:
    """A failed renewal is logged, not raised: the pass goes on (the next one may work, and
    the recorder notices a database that went away)."""
    exc = None if done.cancelled() else done.exception()
    if exc is not None:
        log.warning("renewing leases failed: %s", short(exc))


def _release(ctx: AppContext) -> int:
    with session_scope(ctx.engine) as session:
        return deliveries.release(session, ctx.now())


async def send_due(
    ctx: AppContext,
    *,
    worker_id: str,
    stop: StopSignal | None = None,
    pool: SmtpPool | None = None,
    limit: int | None = None,
    progress: Callable[[SendReport], None] | None = None,
    report: SendReport | None = None,
) -> SendReport:
    """Send every delivery that is due, batch by batch, until none is left or `stop` is set.

    `progress(report)` is called after each group of outcomes is recorded (the CLI's bar).
    `report`, when given, is the one filled in (the caller still has it if the pass fails:
    `handed_back` says its claims went back once the database answered again).

    Pipelined: while batch N is on the wire, batch N+1 is claimed and prepared in a worker
    thread, and outcomes are committed in small groups as the server answers (`Recorder`),
    so database work never blocks the event loop, which the web server shares. Every claimed
    row is recorded (sent, failed, skipped, retry, or handed back as pending when a stop
    came first); if the pass fails (the database went away), what it knows is recorded and
    the rest handed back as soon as the database answers (`handback`); if the process dies,
    its rows are released when their lease expires, and at most `recorder.UNRECORDED_MAX`
    of them can have been accepted by the server by then.

    Terminates: each claimed row leaves the claimable set (`sending`, then sent, failed,
    skipped, or retry with a later `next_attempt_at`) before the next claim.
    """
    report = report if report is not None else SendReport()
    started = time.perf_counter()
    renderer = Renderer(ctx.settings)
    cache = PassCache()
    owned = pool is None
    smtp = pool or SmtpPool(ctx.settings, on_transaction=ctx.metrics.smtp_transaction_done)
    size = limit or ctx.settings.batch_size
    # DKIM's private-key operations in a process beside this one (mail.dkim_offload).
    keys = [ctx.settings.dkim_key_file, ctx.settings.dkim_ed25519_key_file]
    offload = offload_for(smtp.signer, keys)

    def recorded(outcomes: Sequence[Outcome], bounced: list[int]) -> None:
        report.add(outcomes)
        report.bounced += len(bounced)
        _count(ctx, outcomes)
        if progress is not None:
            progress(report)

    # The pass's database work in its own threads: one claims and prepares the next batch,
    # one commits outcomes, and a third, started only when both are busy, renews leases
    # (senders wait for it, so it must not queue behind them). Not the loop's default
    # executor, which grows to six threads: each thread that allocates gets its own malloc
    # arena, and those arenas kept ≈15 MB more resident (benchmarks/bench_delivery.py).
    threads = ThreadPoolExecutor(max_workers=3, thread_name_prefix="digestd-send")
    loop = asyncio.get_running_loop()
    recorder = Recorder(ctx, worker_id, recorded, threads)

    def stopped() -> bool:
        return stop is not None and stop.is_set()

    # Leases are renewed every third of their length (by the injected clock, checked before
    # each message): a pass can outlast one lease (a slow server, DIGESTD_SMTP_RATE), and a
    # lease that ran out would let housekeeping hand back, and a claim send again, what
    # this pass still holds. Senders wait for a renewal in progress (a few ms every third
    # of a lease), so no message goes out while it could be stale.
    lease = ctx.settings.lease_seconds
    renewed_at = ctx.now()
    renewal: asyncio.Future[int] | None = None

    async def keep_leases() -> None:
        nonlocal renewed_at, renewal
        if renewal is None or renewal.done():
            now = ctx.now()
            if (now - renewed_at).total_seconds() * 3 < lease:
                return
            renewed_at = now
            renewal = loop.run_in_executor(threads, _renew, ctx, worker_id)
            renewal.add_done_callback(_renewed)
        with contextlib.suppress(Exception):  # logged by _renewed; the pass goes on
            await asyncio.shield(renewal)

    def claim_next() -> asyncio.Task[Batch | None]:
        return asyncio.ensure_future(
            loop.run_in_executor(threads, claim_and_prepare, ctx, renderer, cache, worker_id, size)
        )

    # Thread work is awaited through shield(): cancelling this pass must not cancel the
    # wait on a thread that keeps running (a claim), or its result is lost.
    upcoming: asyncio.Task[Batch | None] | None = None  # claim + prepare of the next batch
    claiming = False  # a claim was made (it may have committed even if its answer was lost)
    try:
        report.released = await loop.run_in_executor(threads, _release, ctx)
        claiming = not stopped()
        upcoming = claim_next() if claiming else None
        while upcoming is not None:
            current = await asyncio.shield(upcoming)
            upcoming = None
            if current is None:
                break
            report.claimed += len(current.claims)
            if offload is not None:
                offload.expect(len(current.jobs))  # a pass big enough starts the process
            report.renders += current.renders
            if not stopped():
                upcoming = claim_next()
            for outcome in current.outcomes:  # decided while preparing (skips, render errors)
                recorder.add(outcome, credit=False)
            await keep_leases()
            await _send_jobs(
                ctx, smtp, renderer, current.jobs, stop, recorder, keep_leases, offload
            )
        await recorder.close()
        report.unrecorded_peak = recorder.unrecorded_peak
    except asyncio.CancelledError:
        # A hard stop. What the server already accepted is recorded before giving up, so
        # it is not sent again. The batch's unattempted rest stays `sending` under this
        # worker until released (at once by a graceful stop, or at lease expiry). A batch
        # claimed ahead and not started is handed back at once.
        await _settle(ctx, recorder, upcoming)
        raise
    except Exception as exc:
        # Not a stop but a failure (say, the database went away). No message of this pass
        # is on the wire any more (_send_jobs waits for its senders). As soon as the
        # database answers, what it knows is written (what the server accepted: `sent`) and
        # its other claims go back to pending, so nothing waits for its lease (handback.py).
        if claiming:
            owed = await _owed(recorder, upcoming)
            done = await hand_back_when_possible(
                ctx,
                owed,
                worker_id,
                failure=exc,
                executor=threads,
                on_recorded=recorded,
            )
            report.handed_back = done.released if done is not None else 0
        raise
    except BaseException:
        with contextlib.suppress(Exception):
            await _settle(ctx, recorder, upcoming)
        raise
    finally:
        if offload is not None:
            await offload.close()  # the signing process, if it was started
        if owned:
            await smtp.close()
        # Without waiting: after a cancel, a commit or claim may still be running, and its
        # thread ends by itself when done (settle has recorded what it could).
        threads.shutdown(wait=False)
        if report.claimed:
            ctx.metrics.send_pass_done(time.perf_counter() - started)
    return report


def _count(ctx: AppContext, outcomes: Sequence[Outcome]) -> None:
    """Count recorded outcomes on the process's metrics."""
    by_status = Counter(o.status for o in outcomes)
    ctx.metrics.record_sends(
        sent=by_status[D.SENT],
        failed=by_status[D.FAILED],
        retried=by_status[D.RETRY],
        skipped=by_status[D.SKIPPED],
        # Refused for good because of the address (a hard failure; giving up is not a bounce).
        bounced=sum(
            1 for o in outcomes if o.status == D.FAILED and o.failure is not None and o.failure.hard
        ),
    )


async def _owed(recorder: Recorder, upcoming: asyncio.Future[Batch | None] | None) -> list[Outcome]:
    """What a failed pass still has to write: the outcomes not committed, then those of the
    batch claimed ahead (its unattempted jobs handed back as pending)."""
    owed = await recorder.unsaved()
    ahead = None
    if upcoming is not None:
        with contextlib.suppress(Exception):  # its claim failed too: release finds its rows
            ahead = await upcoming
    if ahead is not None:
        owed += ahead.outcomes
        owed += [Outcome(job.claim, D.PENDING, None) for job in ahead.jobs]
    return owed


async def _settle(
    ctx: AppContext, recorder: Recorder, upcoming: asyncio.Future[Batch | None] | None
) -> None:
    """Finish the bookkeeping of an interrupted pass (see send_due's except clauses)."""
    if upcoming is not None:
        ahead = None
        with contextlib.suppress(Exception):
            ahead = await upcoming
        if ahead is not None:
            for outcome in ahead.outcomes:
                recorder.add(outcome, credit=False)
            for job in ahead.jobs:
                recorder.add(Outcome(job.claim, D.PENDING, None), credit=False)
    await recorder.settle()
