"""The daemon's scheduler and jobs (APScheduler 3.x AsyncIOScheduler, each `max_instances=1`,
`coalesce=True`), each logging one line per run, and the graceful stop; see the package's
docstring for what each job does."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from digestd.core.context import AppContext
from digestd.core.db import session_scope

if TYPE_CHECKING:
    from digestd.delivery.planning import PlanReport
    from digestd.delivery.sending import SendReport
    from digestd.inbound.imap_poll import PollReport
    from digestd.ingest.types import FetchReport

log = logging.getLogger("digestd.daemon")

MINUTE = 60
# A run that starts this late (e.g. the machine was suspended) is still worth doing;
# coalesce=True folds any pile-up of missed runs into one.
MISFIRE_GRACE_SECONDS = 30
# After a stop request: how long in-flight sends may take to finish before they are
# cancelled and their deliveries handed back (an SMTP transaction is bounded by
# DIGESTD_SMTP_TIMEOUT, so this bound is the smaller of that and 20 s).
MAX_STOP_GRACE_SECONDS = 20.0


class Daemon:
    """The scheduler, its jobs and the stop logic; `run_forever` is the public entry."""

    def __init__(self, ctx: AppContext, stop: asyncio.Event, worker_id: str) -> None:
        self.ctx = ctx
        self.stop = stop
        self.worker_id = worker_id
        self.scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={
                "max_instances": 1,
                "coalesce": True,
                "misfire_grace_time": MISFIRE_GRACE_SECONDS,
            },
        )
        self._running: set[asyncio.Task[Any]] = set()
        self._last_beat = time.monotonic()
        # Set when the first ingest run has finished (ok or not): planning waits for it.
        self._first_ingest_done = asyncio.Event()

    # -- jobs: each logs exactly one line per run ---------------------------------------

    async def _run_job(self, name: str, body: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        """Run one job body; log one line (what it did, how long); never let it kill the loop.

        The body returns its counts; they are the line's `key=value` text and, in JSON
        logs, fields of their own (with `job`, `worker` and `duration_ms`)."""
        if self.stop.is_set():
            return
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        started = time.perf_counter()
        try:
            counts = await body()
            ms = _ms(started)
            fields = {"job": name, "worker": self.worker_id, **counts, "duration_ms": ms}
            log.info("job=%s %s duration_ms=%d", name, _pairs(counts), ms, extra=fields)
        except asyncio.CancelledError:
            ms = _ms(started)
            fields = {"job": name, "worker": self.worker_id, "duration_ms": ms}
            log.warning("job=%s cancelled by stop duration_ms=%d", name, ms, extra=fields)
            raise
        except Exception as exc:  # a failing job is logged and retried on its next run
            ms = _ms(started)
            log.error(
                "job=%s failed error=%s duration_ms=%d",
                name,
                one_line(exc),
                ms,
                exc_info=log.isEnabledFor(logging.DEBUG),
                extra={"job": name, "worker": self.worker_id, "duration_ms": ms},
            )
        finally:
            self._last_beat = time.monotonic()
            if task is not None:
                self._running.discard(task)

    def alive(self) -> bool:
        """For /healthz: the scheduler runs and a job finished recently (plan runs each minute)."""
        recent = time.monotonic() - self._last_beat < 5 * MINUTE
        return bool(self.scheduler.running) and not self.stop.is_set() and recent

    async def ingest(self) -> None:
        async def body() -> dict[str, Any]:
            from digestd.ingest import fetch_sources

            reports = await fetch_sources(self.ctx, only_due=True)
            return _summarize_fetch(reports)

        try:
            await self._run_job("ingest", body)
        finally:
            self._first_ingest_done.set()

    async def plan(self) -> None:
        # Papers first: what the due sources hold at start goes into the first digests.
        # (Bounded: fetches have their own timeouts; a stop cancels this wait.)
        await self._first_ingest_done.wait()

        async def body() -> dict[str, Any]:
            from digestd.delivery.planning import plan_due

            # Planning is synchronous database work: run it off the loop so the web
            # endpoints and in-flight SMTP transactions keep moving.
            report = await asyncio.to_thread(plan_due, self.ctx)
            if report.planned:
                self.kick("send")
            return _summarize(report)

        await self._run_job("plan", body)

    async def send(self) -> None:
        async def body() -> dict[str, Any]:
            from digestd.delivery.sending import SendReport, send_due

            # send_due claims batches until none is due or `stop` is set; a stop lets the
            # messages already handed to SMTP finish, and returns.
            report = SendReport()
            try:
                await send_due(self.ctx, worker_id=self.worker_id, stop=self.stop, report=report)
            except Exception:
                if not report.handed_back or self.stop.is_set():
                    raise
                # The pass failed (the database went away) and handed its claims back once
                # the database answered again (logged by delivery/handback.py): send them
                # now, once, rather than at the next run. A second failure is the job's.
                report = SendReport()
                await send_due(self.ctx, worker_id=self.worker_id, stop=self.stop, report=report)
            return _summarize(report)

        await self._run_job("send", body)

    async def inbound_imap(self) -> None:
        async def body() -> dict[str, Any]:
            from digestd.inbound.imap_poll import poll_configured_mailbox

            # imaplib and the recording are blocking: a worker thread; a stop request ends
            # the poll between two messages.
            report = await asyncio.to_thread(
                poll_configured_mailbox, self.ctx, stop=self.stop.is_set
            )
            return _summarize(report)

        await self._run_job("inbound-imap", body)

    async def housekeeping(self) -> None:
        async def body() -> dict[str, Any]:
            from digestd.delivery import deliveries

            def release() -> int:
                with session_scope(self.ctx.engine) as session:
                    return deliveries.release(session, self.ctx.now())

            released = await asyncio.to_thread(release)
            if released:
                self.kick("send")
            return {"released_expired_leases": released}

        await self._run_job("housekeeping", body)

    def kick(self, job_id: str) -> None:
        """Run a job now (e.g. send right after planning); a running instance absorbs it."""
        job = self.scheduler.get_job(job_id)
        if job is not None and not self.stop.is_set():
            job.modify(next_run_time=datetime.now(UTC))

    # -- lifecycle -----------------------------------------------------------------------

    def schedule(self) -> None:
        """Add every job, each with an immediate first run."""
        now = datetime.now(UTC)
        lease = self.ctx.settings.lease_seconds
        # Expired leases are looked for a few times per lease length (at most every
        # minute), so a crashed worker's deliveries come back soon after they expire.
        housekeeping_every = max(1.0, min(float(MINUTE), lease / 3))
        jobs: list[tuple[str, Callable[[], Awaitable[None]], float]] = [
            ("housekeeping", self.housekeeping, housekeeping_every),
            ("ingest", self.ingest, MINUTE),
            ("plan", self.plan, MINUTE),
            # Retries whose next attempt has come and deliveries planned by a replica are
            # picked up at this pace; a plan or housekeeping run that finds work kicks it.
            ("send", self.send, 15),
        ]
        if self.ctx.settings.imap is not None:
            jobs.append(
                (
                    "inbound-imap",
                    self.inbound_imap,
                    float(self.ctx.settings.inbound_imap_interval_seconds),
                )
            )
        for offset, (job_id, func, every) in enumerate(jobs):
            self.scheduler.add_job(
                func,
                IntervalTrigger(seconds=every, timezone=UTC),
                id=job_id,
                name=job_id,
                next_run_time=now + timedelta(milliseconds=offset),
            )

    async def stop_gracefully(self) -> None:
        """Stop claiming, let in-flight work finish (bounded), hand back what is still held."""
        # pause, not shutdown: AsyncIOExecutor.shutdown() cancels running jobs at once, which
        # would abandon messages already handed to SMTP. Shut down once they are done.
        if self.scheduler.running:
            self.scheduler.pause()
        grace = min(self.ctx.settings.smtp_timeout, MAX_STOP_GRACE_SECONDS)
        pending = {t for t in self._running if not t.done()}
        if pending:
            _, pending = await asyncio.wait(pending, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        released = await asyncio.to_thread(self.release_own_leases)
        log.info(
            "stopped worker=%s cancelled_jobs=%d released_leases=%d",
            self.worker_id,
            len(pending),
            released,
        )

    def release_own_leases(self) -> int:
        """Deliveries this worker claimed but did not finish go back to pending at once."""
        from digestd.delivery import deliveries

        with session_scope(self.ctx.engine) as session:
            return deliveries.release(session, self.ctx.now(), worker_id=self.worker_id)


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text.splitlines()[0]}"


def _summarize(report: PlanReport | SendReport | PollReport) -> dict[str, Any]:
    """A report's fields for the one-line job log (lists by their length)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(report):
        value = getattr(report, f.name)
        out[f.name] = len(value) if isinstance(value, list) else value
    return out


def _summarize_fetch(reports: list[FetchReport]) -> dict[str, Any]:
    """Sources fetched, how many failed, entries added: the ingest job's counts."""
    return {
        "sources": len(reports),
        "failed": sum(1 for r in reports if r.failed),
        "new_entries": sum(r.new for r in reports),
        "updated_entries": sum(r.updated for r in reports),
    }


def _pairs(fields: dict[str, Any]) -> str:
    """`key=value …` for the text log line (a dict of counts as `k:n,k:n`, `-` when empty)."""
    return " ".join(f"{k}={_text(v)}" for k, v in fields.items())


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}:{n}" for k, n in sorted(value.items())) or "-"
    return str(value)
