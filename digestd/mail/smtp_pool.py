"""SMTP delivery over a bounded pool of kept-open connections (aiosmtplib), with an optional
rate limit; replies are classified into temporary and permanent failures.

With DKIM signing on (DIGESTD_DKIM_KEY_FILE), every message the pool flattens is signed on
the bytes it sends (`send`, `send_bytes`: confirmation mails, command replies, the rare
digest the fast path declines); a digest in wire form (`send_wire`) comes signed already
with `pool.signer`'s keys, from its template's shared parts (`mime.Filled`; a send pass has
the private-key operations done in a signing process, `dkim_offload`)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import time
from collections.abc import Callable
from email.message import EmailMessage
from types import TracebackType

import aiosmtplib
from aiolimiter import AsyncLimiter
from aiosmtplib.email import extract_recipients, extract_sender, flatten_message

from digestd.core.config import Settings
from digestd.mail.dkim import DkimSigner, signer_for
from digestd.mail.idn import ascii_domain
from digestd.mail.mime import dot_stuff, from_wire

# Where a send failed, when it is not about the recipient (`SendError.stage`): connecting
# (the connection, the greeting, TLS, AUTH) or our envelope sender (MAIL FROM refused), or
# an address our relay cannot carry (a non-ASCII local part without SMTPUTF8: nothing was
# sent, and sending again would not help).
CONNECT, SENDER, ADDRESS = "connect", "sender", "address"


class SendError(Exception):
    """A message was not accepted; `code` and `reply` are the server's words where it gave
    any. `stage` is CONNECT or SENDER when the failure happened before the recipient was
    named (so it is ours, never the recipient's: `delivery.failures`), else ""."""

    def __init__(self, reply: str, code: int | None = None, *, stage: str = "") -> None:
        super().__init__(reply)
        self.reply = reply
        self.code = code
        self.stage = stage


class TemporarySendError(SendError):
    """4xx, a dropped connection or a timeout: try again later."""


class PermanentSendError(SendError):
    """5xx: do not try again (what it means for the address: `subscribers.bounce_policy`)."""


def _classify(exc: BaseException) -> SendError:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        first = exc.recipients[0]
        return _classify(first)
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    reply = f"{code} {message}" if code else message
    stage = SENDER if isinstance(exc, aiosmtplib.SMTPSenderRefused) else ""
    if isinstance(code, int) and 500 <= code < 600:
        return PermanentSendError(message, code, stage=stage)
    return TemporarySendError(reply if code else message, code, stage=stage)


# What the pool sends: a message, a message with its envelope sender, or flattened bytes
# with (sender, recipient, bytes, in wire form already).
_Outgoing = EmailMessage | tuple[EmailMessage, str] | tuple[str, str, bytes, bool]


# ---- one transaction of flattened bytes -------------------------------------------------
#
# Written by hand (on aiosmtplib's public protocol.write and read_response) because
# aiosmtplib's `sendmail` cost about a third of the CPU of sending a digest
# (benchmarks/bench_delivery.py): three regex passes over the whole message per send (line
# endings, once more only to compute SIZE, and dot-stuffing: ≈0.25 ms for 19 kB) and two
# address parses with email.utils. A digest is built in wire form already (CRLF, a leading
# "." doubled: `mime.DigestTemplate.fill`) and goes out as it is (`send_wire`); other bytes
# go through `wire_data`, which applies aiosmtplib's rules, skipping the passes when they
# would change nothing. The exchange is the same: MAIL (with SIZE when offered), RCPT,
# DATA, the data, and RSET after a refusal; the replies raise the same aiosmtplib errors,
# and a reply that does not come within the client's timeout (each step its own) closes the
# connection and raises aiosmtplib's read timeout, as its own commands do.

_LINE_ENDS = re.compile(rb"\r\n|\r|\n")
# A path written as is inside <…>; anything else (quoted local parts, spaces, non-ASCII)
# goes through aiosmtplib's own address handling.
_PLAIN_ADDRESS = re.compile(r"[!-;=?-~]*")


def wire_data(data: bytes) -> bytes:
    """`data` as it goes on the wire after DATA (RFC 5321 4.5.2): CRLF line ends, a "." at
    the start of a line doubled, ending in CRLF "." CRLF."""
    lf = data.count(b"\n")
    if lf != data.count(b"\r\n") or data.count(b"\r") != lf:  # a bare CR or LF
        data = _LINE_ENDS.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return dot_stuff(data) + b".\r\n"


async def transmit(
    client: aiosmtplib.SMTP, sender: str, recipient: str, data: bytes, *, wire: bool = False
) -> str:
    """Send one flattened message (`wire`: in wire form already, see `mime.from_wire`) to one
    recipient on an open connection; returns the server's reply to the data, raises
    aiosmtplib's errors as `sendmail` does."""
    if not (_PLAIN_ADDRESS.fullmatch(sender) and _PLAIN_ADDRESS.fullmatch(recipient)):
        message = from_wire(data) if wire else data
        errors, final = await client.sendmail(sender, [recipient], message)
        if errors:
            code, text = next(iter(errors.values()))
            raise aiosmtplib.SMTPRecipientRefused(code, text, recipient)
        return final
    if client.is_ehlo_or_helo_needed:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            if not client.is_connected:
                raise
            await client.helo()
    if not wire:
        payload = wire_data(data)
    elif data.endswith(b"\r\n"):
        payload = data + b".\r\n"
    else:
        payload = data + b"\r\n.\r\n"
    mail = [b"MAIL", b"FROM:<" + sender.encode("ascii") + b">"]
    if client.supports_extension("size"):
        mail.append(b"SIZE=%d" % (len(payload) - 3))
    # The commands are written on the protocol and each reply awaited without a timeout of
    # its own: one deadline, moved before each step, gives every reply the client's timeout
    # as aiosmtplib's commands do (its wait, asyncio.wait_for on 3.11, made a future, a
    # timer and an extra turn of the loop for each of the four replies). The addresses
    # matched _PLAIN_ADDRESS, so no line holds a control character.
    protocol = client.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("Server not connected")
    loop = asyncio.get_running_loop()
    limit = client.timeout
    steps = (  # a line, and the replies that let the exchange go on
        (b" ".join(mail) + b"\r\n", (250,)),
        (b"RCPT TO:<" + recipient.encode("ascii") + b">\r\n", (250, 251)),
        (b"DATA\r\n", (354,)),
        (payload, (250,)),
    )
    try:
        async with asyncio.timeout(None) as deadline:
            for step, (line, ok) in enumerate(steps):
                if limit is not None:
                    deadline.reschedule(loop.time() + limit)
                protocol.write(line)
                reply = await protocol.read_response(timeout=None)
                if reply.code not in ok:
                    if reply.code == 421 and step < 3:  # as aiosmtplib: the server is closing
                        client.close()
                    raise _refused(step, reply, sender, recipient)
    except TimeoutError:
        # As aiosmtplib's own timeout: the connection is closed (a late reply must not pair
        # with the next command) and the error is its read timeout.
        client.close()
        raise aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response") from None
    except aiosmtplib.SMTPServerDisconnected:
        client.close()  # as aiosmtplib does: a half-read reply must not pair with the next
        raise
    except aiosmtplib.SMTPResponseException:
        # As sendmail does: reset the envelope for the connection's next message.
        with contextlib.suppress(ConnectionError, aiosmtplib.SMTPException):
            await client.rset()
        raise
    return reply.message


def _refused(
    step: int, reply: aiosmtplib.SMTPResponse, sender: str, recipient: str
) -> aiosmtplib.SMTPResponseException:
    """The error `sendmail` raises for a refusal at `step` (MAIL, RCPT, DATA, the data)."""
    if step == 0:
        return aiosmtplib.SMTPSenderRefused(reply.code, reply.message, sender)
    if step == 1:
        return aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, recipient)
    return aiosmtplib.SMTPDataError(reply.code, reply.message)


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
        on_transaction: Callable[[float], None] | None = None,
    ) -> None:
        self.settings = settings
        # Told the seconds of each transaction (MAIL FROM to the reply to DATA): metrics.
        self._on_transaction = on_transaction
        # The system's trust store unless told otherwise (tests pass one trusting their CA).
        self._tls_context = tls_context
        self.size = max_connections or settings.smtp_max_connections
        rate = rate if rate is not None else settings.smtp_rate
        self._limiter = AsyncLimiter(rate, 1.0) if rate else None
        # DKIM (None: off). Read here, so a key file that cannot be used is one line at the
        # start of a pass (mail.dkim.DkimKeyError), not a failure per message.
        self.signer: DkimSigner | None = signer_for(settings)
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
        """Send one already flattened message as is: no re-parse or re-flatten
        (`send_message` does both). Same replies and errors as `send`."""
        if self.signer is not None:
            data = self.signer.sign(data)
        return await self._send((sender, recipient, data, False))

    async def send_wire(self, sender: str, recipient: str, wire: bytes) -> str:
        """`send_bytes` for a message in wire form already (`mime.DigestTemplate.fill`: CRLF,
        dot-stuffed, signed when `signer` is set): written as it is, with no pass over its
        bytes."""
        return await self._send((sender, recipient, wire, True))

    async def _send(self, message: _Outgoing) -> str:
        message = _ascii_domains(message)
        if self._limiter is not None:
            await self._limiter.acquire()
        client = await self._idle.get()
        try:
            reused = client is not None and client.is_connected
            try:
                client = await self._ready(client)
                return await self._timed(client, message)
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
                return await self._timed(client, message)
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
                stage=CONNECT,
            ) from None
        return client

    async def _timed(self, client: aiosmtplib.SMTP, message: _Outgoing) -> str:
        started = time.perf_counter()
        try:
            return await self._transmit(client, message)
        finally:
            if self._on_transaction is not None:
                self._on_transaction(time.perf_counter() - started)

    async def _transmit(self, client: aiosmtplib.SMTP, message: _Outgoing) -> str:
        await self._check_smtputf8(client, message)
        if isinstance(message, tuple) and len(message) == 4:
            sender, recipient, data, wire = message
            return await transmit(client, sender, recipient, data, wire=wire)
        if self.signer is not None:
            msg, envelope = message if isinstance(message, tuple) else (message, None)
            return await self._transmit_signed(client, msg, envelope, self.signer)
        if isinstance(message, tuple):
            errors, reply = await client.send_message(message[0], sender=message[1])
        else:
            errors, reply = await client.send_message(message)
        if errors:
            code, text = next(iter(errors.values()))
            raise _classify(aiosmtplib.SMTPRecipientRefused(code, text, ""))
        return reply

    async def _check_smtputf8(self, client: aiosmtplib.SMTP, message: _Outgoing) -> None:
        """A non-ASCII local part goes only to a relay that offers SMTPUTF8; else the message
        is refused here, permanently and in words (retrying cannot make the relay learn)."""
        unwritable = [a for a in _envelope(message) if not a.isascii()]
        if not unwritable:
            return
        if client.is_ehlo_or_helo_needed:
            await client.ehlo()
        if not client.supports_extension("smtputf8"):
            relay = f"{self.settings.smtp_host}:{self.settings.smtp_port}"
            raise PermanentSendError(
                f"{unwritable[0]}: a non-ASCII local part needs SMTPUTF8, which the relay"
                f" {relay} does not offer",
                stage=ADDRESS,
            )

    @staticmethod
    async def _transmit_signed(
        client: aiosmtplib.SMTP, message: EmailMessage, sender: str | None, signer: DkimSigner
    ) -> str:
        """`send_message`'s work with a signature on the flattened bytes: the same envelope
        (From and To, Bcc dropped) and SMTPUTF8 when an address needs it; 7-bit bodies (every
        part digestd writes is quoted-printable), so what is signed is what arrives."""
        sender = sender if sender is not None else extract_sender(message)
        recipients = extract_recipients(message)
        if sender is None or not recipients:
            raise aiosmtplib.SMTPException("a message without sender or recipients")
        utf8 = not (sender + "".join(recipients)).isascii()
        options = []
        if utf8:
            if not client.supports_extension("smtputf8"):
                raise aiosmtplib.SMTPNotSupported("the address needs SMTPUTF8, not offered")
            options.append("SMTPUTF8")
        data = signer.sign(flatten_message(message, utf8=utf8, cte_type="7bit"))
        errors, reply = await client.sendmail(sender, recipients, data, mail_options=options)
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


def _ascii_domains(message: _Outgoing) -> _Outgoing:
    """The envelope addresses with IDN domains as A-labels (`mail.idn`); headers are written
    so by `mail.mime`."""
    if isinstance(message, tuple) and len(message) == 4:
        sender, recipient, data, wire = message
        return (ascii_domain(sender), ascii_domain(recipient), data, wire)
    if isinstance(message, tuple):
        return (message[0], ascii_domain(message[1]))
    return message


def _envelope(message: _Outgoing) -> list[str]:
    """The envelope sender and recipients a message goes out with."""
    if isinstance(message, tuple) and len(message) == 4:
        return [message[0], message[1]]
    msg, sender = message if isinstance(message, tuple) else (message, None)
    sender = sender if sender is not None else extract_sender(msg)
    return [sender or "", *extract_recipients(msg)]
