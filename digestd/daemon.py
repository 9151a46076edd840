"""`digestd run`: the long-running scheduler (and web endpoints) in one asyncio loop.

Jobs (APScheduler 3.x AsyncIOScheduler, each `max_instances=1`, `coalesce=True`):

- ingest        every minute: fetch the sources whose `next_fetch_at` is due (each source keeps
                its own interval and backoff; the ingest service computes `next_fetch_at`).
- plan          every minute: one delivery per due (subscriber, period); idempotent. Its first
                run waits for the first ingest run to finish: a digest's window ends when it
                is planned, so a daemon (re)started at the send hour with a source not yet
                fetched would otherwise plan an empty digest a moment before the papers arrive.
- send          claims due deliveries in batches until none is left or a stop is requested.
- housekeeping  expired leases (a crashed or killed worker) go back to pending.
- inbound-imap  (when DIGESTD_INBOUND_IMAP is set) every DIGESTD_INBOUND_IMAP_INTERVAL_SECONDS:
                one bounded poll of the mailbox that bounces and complaints arrive in.

With DIGESTD_INBOUND_LISTEN set, the inbound SMTP listener (an MX for the bounce domain)
runs on the same loop; it is bound before any job runs and stops first on SIGTERM.

Every job runs once immediately at start, so a restarted daemon resumes at once.

Crash safety comes from the delivery store, not from this loop: a claimed delivery carries a lease;
if this process dies, the lease expires and any worker (this one restarted, or a replica)
claims it again with the same Message-ID. On SIGTERM/SIGINT we stop claiming, let in-flight
sends finish for a bounded time, then hand back whatever this worker still holds.

SQLite is single-process: a second daemon on the same file is refused (an fcntl lock on
`<db>.lock`, released by the kernel even on SIGKILL). PostgreSQL allows many replicas;
they share work through `SELECT … FOR UPDATE SKIP LOCKED` in `digestd.delivery.deliveries`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import make_url

from digestd.core.context import AppContext
from digestd.core.db import redact_url, session_scope
from digestd.core.logs import configure_logging
from digestd.delivery.deliveries import new_worker_id

if TYPE_CHECKING:
    from digestd.delivery.planning import PlanReport
    from digestd.delivery.sending import SendReport
    from digestd.inbound.imap_poll import PollReport
    from digestd.inbound.smtp_listener import InboundSmtpListener
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


class DaemonStartError(RuntimeError):
    """The daemon cannot start (lock held, address in use…); the message is one line."""


class DaemonAlreadyRunning(DaemonStartError):
    """Another daemon holds the lock of this SQLite database; the message is one line."""


# ---- single-process lock (SQLite) ---------------------------------------------------------


def lock_path_for(database_url: str) -> Path | None:
    """`<db file>.lock` for a SQLite file database; None for PostgreSQL (replicas allowed)."""
    if not database_url.startswith("sqlite"):
        return None
    db = make_url(database_url).database
    if not db or db == ":memory:":
        return None
    return Path(db).expanduser().resolve().with_name(Path(db).name + ".lock")


@contextlib.contextmanager
def single_process_lock(database_url: str) -> Iterator[Path | None]:
    """Hold an exclusive lock for this SQLite file for the daemon's lifetime.

    fcntl.flock is tied to the open file description: the kernel drops it when the
    process exits in any way (SIGKILL included), so a crash never leaves a stale lock.
    """
    path = lock_path_for(database_url)
    if path is None:
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle: IO[str] = open(path, "a+")  # noqa: SIM115 - held open for the lifetime on purpose
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise DaemonAlreadyRunning(
                f"another digestd run (pid {holder}) is already using {path.with_suffix('')}; "
                "SQLite allows one daemon per database file (use PostgreSQL for replicas)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield path
    finally:
        handle.close()  # releases the lock


# ---- the daemon ----------------------------------------------------------------------------


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
                _one_line(exc),
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
            from digestd.delivery.sending import send_due

            # send_due claims batches until none is due or `stop` is set; a stop lets the
            # messages already handed to SMTP finish, and returns.
            report = await send_due(self.ctx, worker_id=self.worker_id, stop=self.stop)
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


async def run_forever(
    ctx: AppContext,
    *,
    stop_event: asyncio.Event | None = None,
    worker_id: str | None = None,
    web: bool = True,
) -> int:
    """Run the scheduler (and web) until SIGTERM/SIGINT or `stop_event`; return the exit code.

    Raises DaemonStartError (one-line message) when it cannot start: another daemon on the
    same SQLite file, or the listen address is taken.
    """
    configure_logging(ctx.settings)
    stop = stop_event or asyncio.Event()
    with single_process_lock(ctx.settings.database_url):
        sock = _bind_web(ctx) if web else None
        try:
            listener = await _start_inbound_listener(ctx)
        except DaemonStartError:
            if sock is not None:
                sock.close()
            raise
        daemon = Daemon(ctx, stop, worker_id or new_worker_id())
        loop = asyncio.get_running_loop()
        installed = _install_stop_signals(loop, stop, "no new claims; in-flight sends finish")
        # The web keeps answering (health says the scheduler stopped) until the jobs are
        # done, so it has its own stop, set last.
        web_stop = asyncio.Event()
        web_task: asyncio.Task[None] | None = None
        exit_code = 0
        try:
            if sock is not None:
                from digestd.web import serve

                web_task = asyncio.create_task(
                    serve(ctx, stop_event=web_stop, scheduler_heartbeat=daemon.alive, sock=sock)
                )
            daemon.schedule()
            daemon.scheduler.start()
            where = sock.getsockname() if sock is not None else None
            imap = ctx.settings.imap
            log.info(
                "digestd running worker=%s database=%s web=%s lease_seconds=%d "
                "inbound_smtp=%s inbound_imap=%s",
                daemon.worker_id,
                redact_url(ctx.settings.database_url),
                f"http://{where[0]}:{where[1]}" if where else "off",
                ctx.settings.lease_seconds,
                "{}:{}".format(*listener.address) if listener else "off",
                imap.describe() if imap else "off",
            )
            stopper = asyncio.create_task(stop.wait())
            waiters: set[asyncio.Task[Any]] = {stopper}
            if web_task is not None:
                waiters.add(web_task)
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if web_task is not None and web_task.done():
                # The web server ended on its own: the daemon stops and says why.
                exit_code = 1
                problem = web_task.exception() if not web_task.cancelled() else None
                log.error("web server stopped: %s", _one_line(problem) if problem else "exited")
        finally:
            stop.set()
            if listener is not None:
                # First: no new inbound mail; a message being recorded still gets its 250.
                await listener.stop(grace=MAX_STOP_GRACE_SECONDS)
            await daemon.stop_gracefully()
            web_stop.set()
            if web_task is not None and not web_task.done():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(web_task, timeout=10)
            for sig in installed:
                loop.remove_signal_handler(sig)
        return exit_code


async def _start_inbound_listener(ctx: AppContext) -> InboundSmtpListener | None:
    """The inbound SMTP listener on DIGESTD_INBOUND_LISTEN, bound now (a taken port is one
    clear line before any job runs); None when the setting is empty."""
    if not ctx.settings.inbound_listen:
        return None
    from digestd.inbound.smtp_listener import ListenerError, listener_for, split_listen

    try:
        listener = listener_for(ctx)
        await listener.start(*split_listen(ctx.settings.inbound_listen))
    except ListenerError as exc:
        raise DaemonStartError(str(exc)) from None
    return listener


async def run_inbound_listener(ctx: AppContext, *, stop_event: asyncio.Event | None = None) -> int:
    """`digestd inbound --listen`: only the inbound SMTP listener, until SIGTERM/SIGINT.

    Raises DaemonStartError (one line) when DIGESTD_INBOUND_LISTEN is unset or taken.
    """
    configure_logging(ctx.settings)
    if not ctx.settings.inbound_listen:
        raise DaemonStartError(
            "DIGESTD_INBOUND_LISTEN is not set (HOST:PORT for the inbound SMTP listener)"
        )
    stop = stop_event or asyncio.Event()
    listener = await _start_inbound_listener(ctx)
    assert listener is not None
    loop = asyncio.get_running_loop()
    installed = _install_stop_signals(loop, stop, "no new mail; messages being recorded finish")
    try:
        log.info(
            "digestd inbound listening inbound_smtp=%s:%s database=%s",
            *listener.address,
            redact_url(ctx.settings.database_url),
        )
        await stop.wait()
    finally:
        await listener.stop(grace=MAX_STOP_GRACE_SECONDS)
        for sig in installed:
            loop.remove_signal_handler(sig)
        log.info("inbound listener stopped")
    return 0


def _bind_web(ctx: AppContext) -> socket.socket:
    """Bind DIGESTD_LISTEN before any job runs, so a taken port is one clear line."""
    from digestd.web.server import ServeError, bind

    try:
        return bind(ctx.settings.listen_host, ctx.settings.listen_port)
    except ServeError as exc:
        raise DaemonStartError(str(exc)) from None


def _install_stop_signals(
    loop: asyncio.AbstractEventLoop, stop: asyncio.Event, what: str
) -> list[signal.Signals]:
    """SIGTERM and SIGINT set `stop` (logging `what` happens next); returns those installed."""
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, _on_signal, stop, sig, what)
            installed.append(sig)
    return installed


def _on_signal(stop: asyncio.Event, sig: signal.Signals, what: str) -> None:
    if not stop.is_set():
        log.info("received %s: stopping (%s)", sig.name, what)
    stop.set()


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _one_line(exc: BaseException) -> str:
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
