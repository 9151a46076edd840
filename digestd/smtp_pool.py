"""SMTP delivery over a bounded pool of kept-open connections (aiosmtplib), with an optional
rate limit; replies are classified into temporary and permanent failures."""

from __future__ import annotations

import asyncio
import ssl
from email.message import EmailMessage
from types import TracebackType

import aiosmtplib
from aiolimiter import AsyncLimiter

from digestd.config import Settings


class SendError(Exception):
    """A message was not accepted; `code` and `reply` are the server's words where it gave any."""

    def __init__(self, reply: str, code: int | None = None) -> None:
        super().__init__(reply)
        self.reply = reply
        self.code = code


class TemporarySendError(SendError):
    """4xx, a dropped connection or a timeout: try again later."""


class PermanentSendError(SendError):
    """5xx: do not try again (what it means for the address: `digestd.bounce_policy`)."""


def _classify(exc: BaseException) -> SendError:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        first = exc.recipients[0]
        return _classify(first)
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    reply = f"{code} {message}" if code else message
    if isinstance(code, int) and 500 <= code < 600:
        return PermanentSendError(message, code)
    return TemporarySendError(reply if code else message, code)


# What the pool sends: a message, a message with its envelope sender, or flattened bytes
# with (sender, recipient).
_Outgoing = EmailMessage | tuple[EmailMessage, str] | tuple[str, str, bytes]


class SmtpPool:
    """At most `max_connections` open SMTP connections, reused across messages.

    A connection is taken from an asyncio queue for one message and put back
    afterwards; a broken one is dropped and reopened on the next use. The
    optional limiter bounds messages per second across all connections.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        max_connections: int | None = None,
        rate: float | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        # The system's trust store unless told otherwise (tests pass one trusting their CA).
        self._tls_context = tls_context
        self.size = max_connections or settings.smtp_max_connections
        rate = rate if rate is not None else settings.smtp_rate
        self._limiter = AsyncLimiter(rate, 1.0) if rate else None
        self._idle: asyncio.Queue[aiosmtplib.SMTP | None] = asyncio.Queue()
        for _ in range(self.size):
            self._idle.put_nowait(None)  # a slot with no connection opened yet

    async def __aenter__(self) -> SmtpPool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _new_client(self) -> aiosmtplib.SMTP:
        s = self.settings
        tls_context = None
        if s.smtp_tls != "none":
            tls_context = self._tls_context or ssl.create_default_context()
        return aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password,
            use_tls=s.smtp_tls == "tls",
            start_tls=s.smtp_tls == "starttls",
            tls_context=tls_context,
            timeout=s.smtp_timeout,
        )

    async def send(self, message: EmailMessage, sender: str | None = None) -> str:
        """Send one message (envelope sender: `sender`, else its From); returns the server's
        reply or raises a SendError subclass."""
        return await self._send(message if sender is None else (message, sender))

    async def send_bytes(self, sender: str, recipient: str, data: bytes) -> str:
        """Send one already flattened message (`DigestTemplate.fill`) as is: no re-parse or
        re-flatten (`send_message` does both). Same replies and errors as `send`."""
        return await self._send((sender, recipient, data))

    async def _send(self, message: _Outgoing) -> str:
        if self._limiter is not None:
            await self._limiter.acquire()
        client = await self._idle.get()
        try:
            reused = client is not None and client.is_connected
            try:
                client = await self._ready(client)
                return await self._transmit(client, message)
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                if not reused:
                    raise
                # Most often a kept-open connection the server closed while idle (its
                # timeout): one immediate try on a fresh connection saves a retry minutes
                # later. Only a drop in the instant after the server took the data could
                # duplicate, and the copy carries the same Message-ID.
                assert client is not None  # `reused` means it was open
                await self._quietly_close(client)
                client = await self._ready(None)
                return await self._transmit(client, message)
        except SendError:
            raise
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            error = _classify(exc)
            if isinstance(error, TemporarySendError) and client is not None:
                # The connection may be half-dead: drop it, the slot reopens next time.
                await self._quietly_close(client)
                client = None
            raise error from None
        finally:
            self._idle.put_nowait(client)

    async def _ready(self, client: aiosmtplib.SMTP | None) -> aiosmtplib.SMTP:
        """An open connection: the given one, or a new one (TLS and AUTH as configured)."""
        if client is not None and client.is_connected:
            return client
        client = self._new_client()
        try:
            await client.connect()
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            # Connecting, TLS and AUTH problems are ours (or the server's), never the
            # recipient's: even a 5xx here must not fail deliveries, only delay them.
            client.close()
            error = _classify(exc)
            code = f"{error.code} " if error.code else ""
            raise TemporarySendError(
                f"SMTP {self.settings.smtp_host}:{self.settings.smtp_port}: {code}{error.reply}",
                error.code,
            ) from None
        return client

    @staticmethod
    async def _transmit(client: aiosmtplib.SMTP, message: _Outgoing) -> str:
        if isinstance(message, tuple) and len(message) == 3:
            sender, recipient, data = message
            errors, reply = await client.sendmail(sender, [recipient], data)
        elif isinstance(message, tuple):
            errors, reply = await client.send_message(message[0], sender=message[1])
        else:
            errors, reply = await client.send_message(message)
        if errors:
            code, text = next(iter(errors.values()))
            raise _classify(aiosmtplib.SMTPRecipientRefused(code, text, ""))
        return reply

    @staticmethod
    async def _quietly_close(client: aiosmtplib.SMTP) -> None:
        try:
            if client.is_connected:
                await asyncio.wait_for(client.quit(), timeout=5)
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            client.close()

    async def close(self) -> None:
        """QUIT every open connection."""
        clients = []
        while not self._idle.empty():
            clients.append(self._idle.get_nowait())
        for client in clients:
            if client is not None:
                await self._quietly_close(client)
        for _ in clients:
            self._idle.put_nowait(None)
