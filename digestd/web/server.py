"""Serving the app with uvicorn: embedded in a running asyncio loop (daemon) or alone (CLI)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn

from digestd.core.context import AppContext
from digestd.web.app import create_app
from digestd.web.http_limits import deadline_protocol
from digestd.web.state import SchedulerHeartbeat

log = logging.getLogger(__name__)
SHUTDOWN_GRACE_SECONDS = 5


class ServeError(RuntimeError):
    """The server could not start (e.g. the address is in use); one line."""


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the host program decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(listen_host: str, listen_port: int) -> socket.socket:
    """A listening socket, so a caller can learn the port (0 = any) before serving."""
    family = socket.AF_INET6 if ":" in listen_host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((listen_host.strip("[]"), listen_port))
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {listen_host}:{listen_port}: {exc.strerror}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def serve(
    ctx: AppContext,
    *,
    stop_event: asyncio.Event,
    scheduler_heartbeat: SchedulerHeartbeat | None = None,
    sock: socket.socket | None = None,
    started: asyncio.Event | None = None,
) -> None:
    """Serve the web app in the current loop until `stop_event` is set (then shut down cleanly).

    `sock` is an already bound socket (else DIGESTD_LISTEN is bound here); `started` is
    set once requests are accepted.
    """
    settings = ctx.settings
    if sock is None:
        sock = bind(settings.listen_host, settings.listen_port)
    app = create_app(ctx, scheduler_heartbeat=scheduler_heartbeat)
    config = uvicorn.Config(
        app,
        log_level=settings.log_level.lower(),
        log_config=None,  # no handlers of its own: its lines go through digestd's (JSON too)
        lifespan="on",
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        proxy_headers=False,  # client addresses feed the rate limits: never trust a header
        # Bounded (README "Running behind a proxy"): a request's headers and body must come
        # within DIGESTD_WEB_HEADER_TIMEOUT, an idle kept-alive connection is closed after
        # DIGESTD_WEB_KEEPALIVE_TIMEOUT, and at DIGESTD_WEB_MAX_CONNECTIONS open connections
        # a new one closes the one waiting longest for its request (http_limits); with all
        # of them in progress (or as many requests) a request is answered 503 at once.
        http=deadline_protocol(settings.web_header_timeout),
        timeout_keep_alive=settings.web_keepalive_timeout,
        limit_concurrency=settings.web_max_connections,
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    stopper = asyncio.create_task(stop_event.wait())
    try:
        # Bounded: each wait returns when the server is up, has failed, or we are told to stop.
        while not server.started and not task.done() and not stop_event.is_set():
            await asyncio.wait({task, stopper}, timeout=0.05, return_when="FIRST_COMPLETED")
        if server.started and started is not None:
            started.set()
        await asyncio.wait({task, stopper}, return_when="FIRST_COMPLETED")
    finally:
        server.should_exit = True
        stopper.cancel()
        try:
            await task
        except SystemExit:  # uvicorn exits when startup fails
            raise ServeError("the web server failed to start") from None
        finally:
            sock.close()


def run(ctx: AppContext, sock: socket.socket | None = None) -> None:
    """`digestd web`: serve on DIGESTD_LISTEN (or the socket `bind` gave, so the caller
    announces only an address it holds) until SIGINT/SIGTERM."""
    import signal

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        nonlocal sock
        if sock is None:
            sock = bind(ctx.settings.listen_host, ctx.settings.listen_port)
        log.info("web on http://%s (links: %s)", ctx.settings.listen, ctx.settings.base_url)
        await serve(ctx, stop_event=stop, sock=sock)

    asyncio.run(main())
