"""A small strict SMTP server (the receiving side of RFC 5321) whose every buffer is bounded.

Written by hand because aiosmtpd (1.4.6, which served the listener before and still serves
the tests as a sink) cannot be bounded from outside: `SMTP.smtp_DATA` keeps every fragment
of a line without CRLF (`line_fragments`) even once the size limit is passed, and checks the
size only at the end of DATA, so one line without CRLF grew the process with every byte sent
(400 MB: 106 -> 518 MB); its one `StreamReader` limit (`line_length_limit`) bounds command
lines and data lines alike, so data lines long enough for real bounces let `_handle_client`
buffer 10-20 MB per command line; its idle timer is reset only by commands, so a message
still arriving was cut at the idle timeout. Those two methods are the server; replacing
them left little of it, so the few commands an MX needs are here:

- input: one buffer per connection; reading pauses above READ_HIGH_WATER, so what a
  connection holds is that plus one socket read, whatever the peer sends;
- command lines: at most COMMAND_LINE_MAX octets; a longer one is answered `500 5.5.2` and
  the connection closed at once (its end cannot be found without reading all of it);
- DATA: fed to `smtp_data.DataStream` as it arrives, which writes it to a `Spool` (memory
  up to SPOOL_IN_MEMORY, then a temporary file), never joined or copied; its size is
  counted as it arrives and the connection answered `552` and closed at the limit; a data
  line over DATA_LINE_MAX octets makes the message refused (`500 5.5.2`, at its end);
- only `<CRLF>.<CRLF>` ends DATA: a dot after a bare LF or CR is data (no SMTP smuggling);
- time: idle means silence (no byte either way) for `timeout`, counted in DATA too; a whole
  session is capped at SESSION_TIMEOUTS x `timeout` plus one second per MIN_DATA_RATE bytes
  of message data it delivered, so a slow peer that keeps sending is never cut, and one
  that trickles is;
- closing: the reply, then FIN, then the peer's data read and discarded for at most LINGER
  seconds, so the reply is not lost to a reset from our side while the peer still sends.

The policy (which recipients, what a message becomes) is the caller's: `MailPolicy`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from dataclasses import dataclass
from typing import Protocol

from digestd.inbound.smtp_data import DATA_LINE_MAX, SPOOL_IN_MEMORY, DataStream, Fed, Spool
from digestd.inbound.smtp_syntax import parse_path

__all__ = ["ListenerLimits", "MailPolicy", "ServerConfig", "SmtpSession", "Spool"]

log = logging.getLogger("digestd.inbound.smtp")

# RFC 5321 4.5.3.1.4 allows 512 octets for a command line; extensions (SIZE, BODY,
# SMTPUTF8 addresses) make real ones longer, hence twice that.
COMMAND_LINE_MAX = 1024
# Unread input a connection may hold before reading from it pauses (plus one socket read).
READ_HIGH_WATER = 64 * 1024
SOCKET_READ = 256 * 1024  # what asyncio reads from a socket at once
MAX_ERRORS = 20  # 5xx answers in one session before it is closed (Postfix's hard limit)
SESSION_TIMEOUTS = 10
MIN_DATA_RATE = 1024  # bytes per second of message data that extend a session's cap
LINGER = 2.0  # seconds a closed connection's late input is still read (and dropped)


@dataclass(frozen=True)
class ListenerLimits:
    """The bounds of the listener (DIGESTD_INBOUND_MAX_BYTES, _MAX_CONNECTIONS, _TIMEOUT)."""

    max_bytes: int = 10 * 1024 * 1024
    max_connections: int = 20
    timeout: float = 60.0
    max_recipients: int = 50
    session_timeouts: float = SESSION_TIMEOUTS

    @property
    def session_seconds(self) -> float:
        """A session's cap, before the time its message data earns it (MIN_DATA_RATE)."""
        return self.timeout * self.session_timeouts

    @property
    def per_connection_bytes(self) -> int:
        """What one connection may hold in memory: input, one socket read, the spool."""
        return READ_HIGH_WATER + SOCKET_READ + SPOOL_IN_MEMORY + DATA_LINE_MAX


class MailPolicy(Protocol):
    """What the listener decides: whether a session may open, which recipients are taken,
    what becomes of a message (the reply to its DATA)."""

    def admit(self, session: SmtpSession) -> bool: ...

    def release(self, session: SmtpSession) -> None: ...

    def rcpt(self, session: SmtpSession, address: str) -> str: ...

    async def data(self, session: SmtpSession, spool: Spool) -> str: ...


@dataclass(frozen=True)
class ServerConfig:
    policy: MailPolicy
    limits: ListenerLimits
    hostname: str
    tls_context: ssl.SSLContext | None = None


class _Closed(Exception):
    """The connection is gone (or being closed): the session's task ends quietly."""


def local_hostname() -> str:
    """The name in the greeting and EHLO (the machine's FQDN; looked up once)."""
    return socket.getfqdn()


class SmtpSession(asyncio.Protocol):
    """One SMTP connection: the transport's callbacks feed a bounded buffer, one task reads it."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.limits = config.limits
        self.loop = asyncio.get_running_loop()
        self.peer = "?"
        self.busy = False  # a message is being recorded: not idle, not to be cut
        self.tls = False
        self.helo: str | None = None
        self.esmtp = False
        self.mail_from: str | None = None
        self.rcpt_to: list[str] = []
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._eof = False
        self._closing = False
        self._admitted = False
        self._waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._writing: asyncio.Future[None] | None = None
        self._started = self._heard = self.loop.time()
        self._data_bytes = 0
        self._errors = 0
        self._handshaking = False
        self._timer: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    # ---- transport callbacks ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        if not self.config.policy.admit(self):
            self._closing = True
            transport.write(b"421 4.7.0 Too many connections, try again later\r\n")
            transport.close()
            return
        self._admitted = True
        self._timer = self.loop.call_later(self.limits.timeout, self._check_time)
        self._task = self.loop.create_task(self._serve())

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return  # lingering: read and dropped
        self._heard = self.loop.time()
        self._buffer += data
        if len(self._buffer) > READ_HIGH_WATER and not self._reading_paused:
            self._reading_paused = True
            assert self.transport is not None
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        # Half-closed: keep the transport to answer what was sent before the EOF (the
        # session's task closes it); TLS transports cannot stay half-open.
        return not (self.tls or self._closing)

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = self._closing = True
        for handle in (self._timer, self._linger):
            if handle is not None:
                handle.cancel()
        self._wake()
        if self._writing is not None and not self._writing.done():
            self._writing.set_result(None)
        if self._task is not None and not self.busy and self._task is not asyncio.current_task():
            self._task.cancel()
        if self._admitted:
            self._admitted = False
            self.config.policy.release(self)
        self.transport = None

    def pause_writing(self) -> None:
        self._writing = self.loop.create_future()

    def resume_writing(self) -> None:
        if self._writing is not None and not self._writing.done():
            self._writing.set_result(None)
        self._writing = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # ---- time ----------------------------------------------------------------------------

    def _check_time(self) -> None:
        """Idle is silence; the session cap grows with the message data delivered."""
        if self._closing:
            return
        now = self.loop.time()
        if self.busy or self._handshaking:
            # A message being recorded is our silence, not the peer's; a TLS handshake has
            # its own timeout (and the connection is not ours to write on meanwhile).
            self._heard = now
            self._timer = self.loop.call_later(min(self.limits.timeout, 1.0), self._check_time)
            return
        session_end = self._started + self.limits.session_seconds + self._data_bytes / MIN_DATA_RATE
        idle_end = self._heard + self.limits.timeout
        if now >= session_end:
            self.close_with("421 4.4.2 Session too long, closing")
        elif now >= idle_end:
            self.close_with("421 4.4.2 Idle for too long, closing")
        else:
            self._timer = self.loop.call_at(min(session_end, idle_end), self._check_time)

    # ---- output --------------------------------------------------------------------------

    async def _reply(self, text: str) -> None:
        if self._closing or self.transport is None or self.transport.is_closing():
            raise _Closed
        if text[:1] == "5":
            self._errors += 1
        self.transport.write(text.encode("utf-8") + b"\r\n")
        self._heard = self.loop.time()
        if self._writing is not None:  # the peer does not read: wait (bounded by idle time)
            await self._writing
        if self._errors >= MAX_ERRORS:
            self.close_with("421 4.7.0 Too many errors, closing")
            raise _Closed

    def close_with(self, reply: str) -> None:
        """Answer `reply` and close: FIN after it, the peer's data dropped for LINGER s."""
        transport = self.transport
        if self._closing or transport is None or transport.is_closing():
            return
        self._closing = True
        log.info("closing peer=%s: %s", self.peer, reply)
        if self._handshaking:  # the connection is the TLS layer's: no plain text on it
            transport.abort()
            return
        transport.write(reply.encode("ascii") + b"\r\n")
        self._buffer = bytearray()
        try:
            if transport.can_write_eof() and not self._eof:
                transport.write_eof()
                if self._reading_paused:
                    transport.resume_reading()
            else:  # TLS (close_notify after the reply), or the peer has finished sending
                transport.close()
        except OSError:  # the peer is already gone
            transport.abort()
            return
        self._linger = self.loop.call_later(LINGER, transport.abort)
        self._wake()

    def abort(self) -> None:
        """Drop the connection now (the end of a stop)."""
        if self.transport is not None:
            self.transport.abort()

    # ---- input ---------------------------------------------------------------------------

    async def _more(self) -> None:
        """Wait for more input; _Closed once the peer is gone or the session is closing."""
        if self._eof or self._closing:
            raise _Closed
        if self._reading_paused:  # nothing more can be done with what is buffered
            self._reading_paused = False
            assert self.transport is not None
            self.transport.resume_reading()
        self._waiter = self.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        if self._closing:
            raise _Closed

    async def _command_line(self) -> bytes | None:
        """The next command line without its line end; None when it is too long."""
        start = 0
        while True:
            end = self._buffer.find(b"\n", start)
            if end >= 0:
                if end + 1 > COMMAND_LINE_MAX:
                    return None
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line[:-1] if line.endswith(b"\r") else line
            if len(self._buffer) > COMMAND_LINE_MAX:
                return None
            start = len(self._buffer)
            await self._more()

    async def _receive(self, spool: Spool) -> str | None:
        """Read DATA into `spool` (see smtp_data); None once it is all there, else the reply
        that refuses it. Past the size limit: 552 and the connection closed at once."""
        stream = DataStream(spool, self.limits.max_bytes)
        while True:
            fed, consumed = stream.feed(self._buffer)
            self._data_bytes += consumed
            if fed is Fed.DONE:
                return None
            if fed is Fed.TOO_LONG:
                return f"500 5.5.2 Line too long (over {DATA_LINE_MAX} octets)"
            if fed is Fed.TOO_BIG:
                spool.close()
                self.close_with("552 5.3.4 Message size exceeds fixed maximum message size")
                raise _Closed
            await self._more()

    # ---- the session ---------------------------------------------------------------------

    async def _serve(self) -> None:
        try:
            await self._reply(f"220 {self.config.hostname} ESMTP digestd inbound")
            while not self._closing:
                line = await self._command_line()
                if line is None:
                    self.close_with("500 5.5.2 Line too long")
                    return
                await self._command(line)
        except (_Closed, ConnectionError):
            pass
        except Exception:  # a bug of ours: logged, the peer told to try again later
            log.exception("smtp session failed peer=%s", self.peer)
            self.close_with("421 4.3.0 Internal error, try again later")
        finally:
            if self.transport is not None and not self._closing:
                self._closing = True
                self.transport.close()

    async def _command(self, line: bytes) -> None:
        verb, _, arg_bytes = line.partition(b" ")
        try:
            arg = arg_bytes.strip().decode("utf-8")
            name = verb.decode("ascii").upper()
        except UnicodeDecodeError:
            await self._reply("500 5.5.2 Syntax error: not UTF-8")
            return
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in arg):
            await self._reply("501 5.5.2 Syntax error: control character")
            return
        handler = getattr(self, f"_cmd_{name}", None) if name.isalpha() else None
        if handler is None:
            await self._reply("500 5.5.1 Command unrecognized")
            return
        await handler(arg)

    def _reset(self) -> None:
        self.mail_from = None
        self.rcpt_to = []

    async def _cmd_HELO(self, arg: str) -> None:
        await self._greet(arg, esmtp=False)

    async def _cmd_EHLO(self, arg: str) -> None:
        await self._greet(arg, esmtp=True)

    async def _greet(self, arg: str, *, esmtp: bool) -> None:
        if not arg:
            await self._reply("501 5.5.4 Syntax: EHLO hostname")
            return
        self._reset()
        self.helo, self.esmtp = arg, esmtp
        if not esmtp:
            await self._reply(f"250 {self.config.hostname}")
            return
        lines = [
            self.config.hostname,
            f"SIZE {self.limits.max_bytes}",
            "8BITMIME",
            "SMTPUTF8",
            *(["STARTTLS"] if self.config.tls_context and not self.tls else []),
            "ENHANCEDSTATUSCODES",
        ]
        await self._reply("\r\n".join(f"250-{x}" for x in lines[:-1]) + f"\r\n250 {lines[-1]}")

    async def _cmd_MAIL(self, arg: str) -> None:
        if self.helo is None:
            await self._reply("503 5.5.1 Send HELO/EHLO first")
        elif self.mail_from is not None:
            await self._reply("503 5.5.1 Nested MAIL command")
        elif (parsed := parse_path(arg, "FROM:", self.esmtp)) is None:
            await self._reply("501 5.5.4 Syntax: MAIL FROM:<address>")
        elif (problem := self._mail_params(parsed[1])) is not None:
            await self._reply(problem)
        else:
            self.mail_from = parsed[0]
            await self._reply("250 2.1.0 OK")

    def _mail_params(self, params: list[str]) -> str | None:
        for param in params:
            key, _, value = param.upper().partition("=")
            if key == "SIZE" and value.isdigit() and len(value) <= 20:
                if int(value) > self.limits.max_bytes:
                    return "552 5.3.4 Message size exceeds fixed maximum message size"
            elif (key, value) in (("BODY", "7BIT"), ("BODY", "8BITMIME"), ("SMTPUTF8", "")):
                continue
            else:
                return "555 5.5.4 Unsupported parameter"
        return None

    async def _cmd_RCPT(self, arg: str) -> None:
        if self.mail_from is None:
            await self._reply("503 5.5.1 Need MAIL command")
        elif (parsed := parse_path(arg, "TO:", self.esmtp)) is None or not parsed[0]:
            await self._reply("501 5.5.4 Syntax: RCPT TO:<address>")
        elif parsed[1]:
            await self._reply("555 5.5.4 Unsupported parameter")
        else:
            reply = self.config.policy.rcpt(self, parsed[0])
            if reply.startswith("250"):
                self.rcpt_to.append(parsed[0])
            await self._reply(reply)

    async def _cmd_DATA(self, arg: str) -> None:
        if not self.rcpt_to:
            await self._reply("503 5.5.1 Need RCPT command")
            return
        if arg:
            await self._reply("501 5.5.4 Syntax: DATA")
            return
        await self._reply("354 End data with <CR><LF>.<CR><LF>")
        spool = Spool()
        try:
            refused = await self._receive(spool)
            reply = refused or await self.config.policy.data(self, spool)
        finally:
            spool.close()
        self._reset()
        await self._reply(reply)

    async def _cmd_RSET(self, arg: str) -> None:
        self._reset()
        await self._reply("250 2.0.0 OK")

    async def _cmd_NOOP(self, arg: str) -> None:
        await self._reply("250 2.0.0 OK")

    async def _cmd_VRFY(self, arg: str) -> None:
        await self._reply("252 2.5.0 Cannot VRFY user")

    async def _cmd_HELP(self, arg: str) -> None:
        await self._reply("214 2.0.0 EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY STARTTLS")

    async def _cmd_QUIT(self, arg: str) -> None:
        await self._reply("221 2.0.0 Bye")
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    async def _cmd_STARTTLS(self, arg: str) -> None:
        context = self.config.tls_context
        if context is None or self.tls:
            await self._reply("502 5.5.1 STARTTLS not available")
            return
        if arg:
            await self._reply("501 5.5.4 Syntax: STARTTLS")
            return
        await self._reply("220 2.0.0 Ready to start TLS")
        # RFC 3207 4.2: whatever the peer sent after STARTTLS in the clear is discarded.
        self._buffer = bytearray()
        assert self.transport is not None
        self._handshaking = True
        try:
            tls = await self.loop.start_tls(
                self.transport,
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=self.limits.timeout,
            )
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            log.info("TLS handshake failed peer=%s: %s", self.peer, exc)
            # start_tls has closed the connection; the TLS layer may never report it lost
            # to us, so the session ends here (connection_lost is idempotent).
            self.abort()
            self.connection_lost(None)
            raise _Closed from None
        finally:
            self._handshaking = False
        if tls is None:
            raise _Closed
        self.transport, self.tls, self._reading_paused = tls, True, False
        self.helo, self.esmtp = None, False  # RFC 3207 4.2: the session starts again
        self._reset()
