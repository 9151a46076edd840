"""The inbound SMTP listener: an MX for the bounce domain that records, never relays.

`smtp_server` speaks SMTP with every buffer bounded; what is ours here is the policy:

- RCPT: only addresses at the bounce domain are accepted (`accepts`); any other recipient
  gets `550 5.7.1` at once, so nothing is ever relayed and a wrong MX setup shows up in the
  sending MTA's logs instead of as silently swallowed mail.
- Size: `SIZE` is advertised and a larger `MAIL … SIZE=` refused with 552; DATA is counted
  as it arrives and cut with 552 at the limit (see `smtp_server` for lines and memory).
- Connections: at most `max_connections` at a time; one more gets `421` and is closed.
  Memory is bounded by that times `ListenerLimits.per_connection_bytes` (a message over
  256 KiB waits in a temporary file), plus the messages being processed (one per worker).
- Time: an idle timeout that counts silence, and a cap on a whole session (`smtp_server`).
- DATA: the message is handed to the processing (`handle`, in a worker thread: it is
  synchronous database work) as one bytes object read once from its spool, and answered
  `250` once it is recorded. The processing never raises on bad input (an `unrecognized`
  record instead), so a message never leaves the sending MTA retrying forever. Only when
  recording itself fails (the database is down) is the answer `451`: a temporary failure,
  so the MTA keeps the message and tries again.
- TLS: STARTTLS is offered when a certificate is configured, never required (an MX must
  take mail from servers without TLS); there is no AUTH, nobody sends through it.
- Stop: no new connections; idle sessions get `421`; a message being recorded gets its
  answer first (bounded).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol

from digestd.inbound.smtp_server import (
    ListenerLimits,
    ServerConfig,
    SmtpSession,
    Spool,
    local_hostname,
)

if TYPE_CHECKING:
    from digestd.core.config import Settings
    from digestd.core.context import AppContext

__all__ = ["InboundSmtpListener", "ListenerError", "ListenerLimits", "listener_for"]

log = logging.getLogger("digestd.inbound.smtp")

# How long a stop waits for the sessions it told to go before it drops them.
STOP_LINGER = 1.0


class Recorded(Protocol):
    """What the processing returns: at least the kind and the id of the inbound row."""

    @property
    def kind(self) -> str: ...

    @property
    def recorded_id(self) -> int | None: ...


# handle(raw, mail_from, rcpt_to, source) -> Recorded; synchronous, run in a worker thread.
# mail_from is "" for the null reverse-path `<>` (every bounce is sent from it).
Handler = Callable[[bytes, str, Sequence[str], str], Recorded]
Accepts = Callable[[str], bool]


class ListenerError(RuntimeError):
    """The listener cannot start (address in use, bad host); the message is one line."""


class _Policy:
    """The listener's side of each session: the connection cap, recipients at the bounce
    domain only, and recording the message (in the worker pool)."""

    def __init__(
        self, handle: Handler, accepts: Accepts, limits: ListenerLimits, workers: int
    ) -> None:
        self.handle = handle
        self.accepts = accepts
        self.limits = limits
        self.open: set[SmtpSession] = set()
        # Recording is synchronous database work: a small pool of its own keeps it off the
        # event loop and bounded (one worker for SQLite, whose writers queue anyway).
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inbound")

    def admit(self, session: SmtpSession) -> bool:
        if len(self.open) >= self.limits.max_connections:
            log.warning(
                "refused connection peer=%s: %d connections open (DIGESTD_INBOUND_MAX_CONNECTIONS)",
                session.peer,
                len(self.open),
            )
            return False
        self.open.add(session)
        return True

    def release(self, session: SmtpSession) -> None:
        self.open.discard(session)

    def rcpt(self, session: SmtpSession, address: str) -> str:
        try:
            ours = self.accepts(address)
        except Exception:  # a recipient we cannot even judge is not ours
            ours = False
        if not ours:
            log.info("refused recipient=%s peer=%s", _clip(address), session.peer)
            return "550 5.7.1 Relaying denied: this server only accepts mail for its own addresses"
        if len(session.rcpt_to) >= self.limits.max_recipients:
            return "452 4.5.3 Too many recipients"
        return "250 2.1.5 OK"

    async def data(self, session: SmtpSession, spool: Spool) -> str:
        mail_from = session.mail_from or ""
        rcpt_to = list(session.rcpt_to)
        source = f"smtp:{session.peer}"
        size = spool.size
        loop = asyncio.get_running_loop()
        session.busy = True
        try:
            result = await loop.run_in_executor(
                self.executor, self._record, spool, mail_from, rcpt_to, source
            )
        except Exception as exc:
            # Recording failed (database unreachable…): 4xx, so the MTA keeps the message
            # and tries again later. The processing itself never raises on bad input.
            log.error(
                "inbound message not recorded (temporary failure) peer=%s bytes=%d error=%s",
                session.peer,
                size,
                _one_line(exc),
            )
            return "451 4.3.0 Could not record the message now; please try again later"
        finally:
            # No await between here and the reply being written: see InboundSmtpListener.stop.
            session.busy = False
        ident = f" #{result.recorded_id}" if result.recorded_id is not None else ""
        log.info(
            "inbound via smtp kind=%s id=%s peer=%s bytes=%d",
            result.kind,
            result.recorded_id,
            session.peer,
            size,
        )
        return f"250 2.0.0 Recorded as {result.kind}{ident}"

    def _record(self, spool: Spool, mail_from: str, rcpt_to: list[str], source: str) -> Recorded:
        # In the worker thread: the message leaves its spool as one bytes object, the only
        # copy the processing gets (and the spool's memory or file is freed first).
        raw = spool.take()
        return self.handle(raw, mail_from, rcpt_to, source)


class InboundSmtpListener:
    """Binds, serves and stops the inbound SMTP listener on the running asyncio loop."""

    def __init__(
        self,
        handle: Handler,
        accepts: Accepts,
        limits: ListenerLimits | None = None,
        *,
        workers: int = 1,
        hostname: str | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.limits = limits or ListenerLimits()
        self._policy = _Policy(handle, accepts, self.limits, workers)
        self._config = ServerConfig(
            self._policy, self.limits, hostname or local_hostname(), tls_context
        )
        self._server: asyncio.Server | None = None

    @property
    def open_connections(self) -> int:
        return len(self._policy.open)

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port): with port 0 in the setting, the one the system chose."""
        assert self._server is not None and self._server.sockets
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    def _protocol(self) -> SmtpSession:
        return SmtpSession(self._config)

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on host:port (0: any free port); ListenerError with one line if it cannot."""
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                self._protocol, host=host, port=port, reuse_address=True, backlog=128
            )
        except OSError as exc:
            self._policy.executor.shutdown(wait=False)
            raise ListenerError(
                f"cannot listen for inbound mail on {host}:{port} "
                f"(DIGESTD_INBOUND_LISTEN): {exc.strerror or exc}"
            ) from None
        return self.address

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let messages being recorded finish (bounded), close the rest."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        sessions = self._policy.open
        deadline = time.monotonic() + grace
        while sessions:
            # An idle session (or one still sending its message) is told to come back
            # later: its message was not recorded, the MTA keeps it. A message being
            # recorded gets its answer first: `busy` drops right before the 250 is
            # written, with no await in between, so closing afterwards flushes the 250.
            waiting = False
            for session in list(sessions):
                if session.busy and time.monotonic() < deadline:
                    waiting = True
                else:
                    session.close_with("421 4.3.2 Shutting down, try again later")
            if not waiting:
                break
            await asyncio.sleep(0.02)  # paces the check of in-flight recordings (bounded)
        # The sessions told to go get a moment to read it (and close); then they are dropped.
        linger_end = time.monotonic() + STOP_LINGER
        while sessions and time.monotonic() < linger_end:
            await asyncio.sleep(0.02)  # paces the check of closing connections (bounded)
        for session in list(sessions):
            session.abort()
        if server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), timeout=5)
        # wait=True: a recording in progress finishes before the database is disposed.
        await asyncio.to_thread(self._policy.executor.shutdown, wait=True)


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _one_line(exc: BaseException) -> str:
    text = (str(exc).strip() or type(exc).__name__).splitlines()[0]
    return f"{type(exc).__name__}: {text}"


# ---- wiring to the processing (digestd.inbound.process) ---------------------------------


def listener_for(ctx: AppContext) -> InboundSmtpListener:
    """The listener of DIGESTD_INBOUND_LISTEN: our addresses only, recorded by process_message."""
    from digestd.inbound.addresses import is_ours
    from digestd.inbound.process import process_message

    settings = ctx.settings

    def handle(raw: bytes, mail_from: str, rcpt_to: Sequence[str], source: str) -> Recorded:
        return process_message(ctx, raw, mail_from=mail_from, rcpt_to=rcpt_to, source=source)

    return InboundSmtpListener(
        handle,
        lambda address: is_ours(settings, address),
        ListenerLimits(
            max_bytes=settings.inbound_max_bytes,
            max_connections=settings.inbound_max_connections,
            timeout=settings.inbound_timeout,
        ),
        # SQLite has one writer at a time: more threads would only queue on its lock.
        workers=1 if settings.is_sqlite else 4,
        tls_context=_tls_context(settings),
    )


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server context for STARTTLS (DIGESTD_INBOUND_TLS_CERT/KEY), or None; read once at
    start (a renewed certificate needs a restart). ListenerError if they cannot be loaded."""
    if not (settings.inbound_tls_cert and settings.inbound_tls_key):
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.inbound_tls_cert, settings.inbound_tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ListenerError(
            f"cannot load DIGESTD_INBOUND_TLS_CERT/KEY: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    return context


def split_listen(value: str) -> tuple[str, int]:
    """HOST:PORT (already validated by config) as (host, port); [::1]:25 works too."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)
