"""The inbound SMTP listener: an MX for the bounce domain that records, never relays.

aiosmtpd speaks SMTP; what is ours here is the policy around it:

- RCPT: only addresses at the bounce domain are accepted (`accepts`); any other recipient
  gets `550 5.7.1` at once, so nothing is ever relayed and a wrong MX setup shows up in the
  sending MTA's logs instead of as silently swallowed mail.
- Size: `SIZE` is advertised and a larger `MAIL … SIZE=` or DATA is refused with 552.
- Connections: at most `max_connections` at a time; one more gets `421` and is closed.
- Time: an idle timeout per command and a cap on a whole session.
- DATA: the message is handed to the processing (`handle`, in a worker thread: it is
  synchronous database work) and answered `250` once it is recorded. The processing never
  raises on bad input (an `unrecognized` record instead), so a message never leaves the
  sending MTA retrying forever. Only when recording itself fails (the database is down) is
  the answer `451`: a temporary failure, so the MTA keeps the message and tries again.
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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from aiosmtpd.smtp import SMTP, Envelope, Session

if TYPE_CHECKING:
    from digestd.core.config import Settings
    from digestd.core.context import AppContext

log = logging.getLogger("digestd.inbound.smtp")

# One message may name several of our addresses (a DSN to the VERP address and the request
# address, say); more than this in one transaction is not mail for us.
MAX_RECIPIENTS = 50
# A whole SMTP session, however busy, is closed after this many idle timeouts' worth of
# time: a peer that trickles a byte now and then cannot hold a connection for ever.
SESSION_TIMEOUTS = 10


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


@dataclass(frozen=True)
class ListenerLimits:
    """The bounds of the listener (DIGESTD_INBOUND_MAX_BYTES, _MAX_CONNECTIONS, _TIMEOUT)."""

    max_bytes: int = 10 * 1024 * 1024
    max_connections: int = 20
    timeout: float = 60.0
    max_recipients: int = MAX_RECIPIENTS

    @property
    def session_seconds(self) -> float:
        return self.timeout * SESSION_TIMEOUTS


class ListenerError(RuntimeError):
    """The listener cannot start (address in use, bad host); the message is one line."""


class _Sessions:
    """The open sessions (to count them against the cap and to close them on stop)."""

    def __init__(self) -> None:
        self.open: set[_ListenerSMTP] = set()


class _InboundHandler:
    """aiosmtpd hooks: recipients at the bounce domain only, then record the message."""

    def __init__(
        self, handle: Handler, accepts: Accepts, limits: ListenerLimits, run: _Runner
    ) -> None:
        self.handle = handle
        self.accepts = accepts
        self.limits = limits
        self.run = run

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        try:
            ours = self.accepts(address)
        except Exception:  # a recipient we cannot even judge is not ours
            ours = False
        if not ours:
            log.info("refused recipient=%s peer=%s", _clip(address), _peer(session))
            return "550 5.7.1 Relaying denied: this server only accepts mail for its own addresses"
        if len(envelope.rcpt_tos) >= self.limits.max_recipients:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = bytes(envelope.original_content or b"")
        mail_from = "" if envelope.mail_from in (None, "", "<>") else str(envelope.mail_from)
        rcpt_to = list(envelope.rcpt_tos)
        source = f"smtp:{_peer(session)}"
        assert isinstance(server, _ListenerSMTP)
        server.busy = True
        try:
            result = await self.run(self.handle, raw, mail_from, rcpt_to, source)
        except Exception as exc:
            # Recording failed (database unreachable…): 4xx, so the MTA keeps the message
            # and tries again later. The processing itself never raises on bad input.
            log.error(
                "inbound message not recorded (temporary failure) peer=%s bytes=%d error=%s",
                _peer(session),
                len(raw),
                _one_line(exc),
            )
            return "451 4.3.0 Could not record the message now; please try again later"
        finally:
            server.busy = False
        ident = f" #{result.recorded_id}" if result.recorded_id is not None else ""
        log.info(
            "inbound via smtp kind=%s id=%s peer=%s bytes=%d",
            result.kind,
            result.recorded_id,
            _peer(session),
            len(raw),
        )
        return f"250 2.0.0 Recorded as {result.kind}{ident}"


_Runner = Callable[..., Any]


class _ListenerSMTP(SMTP):
    """aiosmtpd's SMTP with a connection cap, a session cap and a busy-aware idle timeout."""

    def __init__(self, handler: _InboundHandler, sessions: _Sessions, **kwargs: Any) -> None:
        # RFC 5321 caps a line at 1000 octets, but bounces quote whatever came before them
        # and some MTAs send longer lines; refusing one (500) would lose the bounce for
        # good. Lines are bounded by the message size instead. Read by SMTP.__init__.
        self.line_length_limit = handler.limits.max_bytes + 2
        super().__init__(handler, **kwargs)
        self._sessions = sessions
        self._limits = handler.limits
        self._counted = False
        self._refused = False
        self._session_handle: asyncio.TimerHandle | None = None
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._counted or self._refused:  # STARTTLS calls this again on the same session
            super().connection_made(transport)
            return
        if len(self._sessions.open) >= self._limits.max_connections:
            self._refused = True
            log.warning(
                "refused connection peer=%s: %d connections open (DIGESTD_INBOUND_MAX_CONNECTIONS)",
                transport.get_extra_info("peername"),
                len(self._sessions.open),
            )
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(b"421 4.7.0 Too many connections, try again later\r\n")
            transport.close()
            return
        self._sessions.open.add(self)
        self._counted = True
        super().connection_made(transport)
        self._session_handle = self.loop.call_later(
            self._limits.session_seconds, self._session_expired
        )

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused and not self._counted:
            return
        if self._counted:
            self._counted = False
            self._sessions.open.discard(self)
        if self._session_handle is not None:
            self._session_handle.cancel()
        super().connection_lost(error)

    def _timeout_cb(self) -> None:
        # A message being recorded is not idleness: wait for its answer instead of closing
        # (closing would lose the 250, and the MTA would send the message again).
        if self.busy:
            self._reset_timeout()
            return
        self.close_with("421 4.4.2 Idle for too long, closing")

    def _session_expired(self) -> None:
        if self.busy:
            self._session_handle = self.loop.call_later(1.0, self._session_expired)
            return
        self.close_with("421 4.4.2 Session too long, closing")

    def close_with(self, reply: str) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        log.info("closing peer=%s: %s", self.session.peer if self.session else "?", reply)
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(reply.encode("ascii") + b"\r\n")
        transport.close()


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
        # Recording is synchronous database work: a small pool of its own keeps it off the
        # event loop and bounded (one worker for SQLite, whose writers queue anyway).
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inbound")
        self._sessions = _Sessions()
        self._handler = _InboundHandler(handle, accepts, self.limits, self._run)
        self._hostname = hostname
        self._tls_context = tls_context
        self._server: asyncio.Server | None = None

    async def _run(self, handle: Handler, *args: Any) -> Recorded:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, handle, *args)

    @property
    def open_connections(self) -> int:
        return len(self._sessions.open)

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port): with port 0 in the setting, the one the system chose."""
        assert self._server is not None and self._server.sockets
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    def _protocol(self) -> _ListenerSMTP:
        return _ListenerSMTP(
            self._handler,
            self._sessions,
            hostname=self._hostname,
            data_size_limit=self.limits.max_bytes,
            timeout=self.limits.timeout,
            # Bounces are often 8-bit (the returned message); keep bytes as they came.
            decode_data=False,
            enable_SMTPUTF8=True,
            ident="digestd inbound",
            # STARTTLS is offered when a certificate is configured, never required: an MX
            # must take mail from servers that do not speak TLS.
            tls_context=self._tls_context,
            require_starttls=False,
        )

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on host:port (0: any free port); ListenerError with one line if it cannot."""
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                self._protocol, host=host, port=port, reuse_address=True, backlog=128
            )
        except OSError as exc:
            self._executor.shutdown(wait=False)
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
        deadline = time.monotonic() + grace
        while self._sessions.open:
            # An idle session (or one still sending its message) is told to come back
            # later: its message was not recorded, the MTA keeps it. A message being
            # recorded gets its answer first: `busy` drops right before the 250 is
            # written, with no await in between, so closing afterwards flushes the 250.
            waiting = False
            for session in list(self._sessions.open):
                if session.busy and time.monotonic() < deadline:
                    waiting = True
                else:
                    session.close_with("421 4.3.2 Shutting down, try again later")
            if not waiting:
                break
            await asyncio.sleep(0.02)  # paces the check of in-flight recordings (bounded)
        if server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), timeout=5)
        # wait=True: a recording in progress finishes before the database is disposed.
        await asyncio.to_thread(self._executor.shutdown, wait=True)


def _peer(session: Session) -> str:
    peer = session.peer
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


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
