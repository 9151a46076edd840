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
A send pass that fails because the database went away hands its claims back as soon as it
answers again (`digestd.delivery.handback`), then sends them at once.

The package: this module starts and stops it all (`run_forever`, `run_inbound_listener`),
`jobs` is the scheduler with its jobs and the graceful stop, `lock` the one-daemon-per-
SQLite-file lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from typing import TYPE_CHECKING, Any

from digestd.core.context import AppContext
from digestd.core.db import redact_url
from digestd.core.logs import configure_logging
from digestd.daemon.jobs import MAX_STOP_GRACE_SECONDS, Daemon, one_line
from digestd.daemon.lock import (
    DaemonAlreadyRunning,
    DaemonStartError,
    lock_path_for,
    single_process_lock,
)
from digestd.delivery.deliveries import new_worker_id

if TYPE_CHECKING:
    from digestd.inbound.smtp_listener import InboundSmtpListener

__all__ = [
    "DaemonAlreadyRunning",
    "DaemonStartError",
    "lock_path_for",
    "run_forever",
    "run_inbound_listener",
    "single_process_lock",
]
log = logging.getLogger("digestd.daemon")


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
                log.error("web server stopped: %s", one_line(problem) if problem else "exited")
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
