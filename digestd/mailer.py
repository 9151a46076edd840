"""MIME building (standard `email` package) and SMTP delivery over a bounded connection pool."""

from __future__ import annotations

import asyncio
import binascii
import re
import secrets
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email import policy as email_policy
from email.headerregistry import Address, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid, parseaddr
from functools import lru_cache
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
    """5xx: do not try again. `is_bad_address` for 5.1.x (no such mailbox and the like)."""

    @property
    def is_bad_address(self) -> bool:
        text = self.reply.lstrip()
        return self.code in (550, 551, 553) and (text.startswith("5.1.") or " 5.1." in text[:12])


def one_line(value: str) -> str:
    """Header-safe text: feed content must never add a header or break one."""
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


def compose(
    *,
    sender: str,
    to: str,
    subject: str,
    text: str,
    html: str | None = None,
    message_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    date: float | None = None,
) -> EmailMessage:
    """A text (and optional HTML) message with safe one-line headers."""
    msg = EmailMessage()
    msg["From"] = one_line(sender)
    msg["To"] = one_line(to)
    msg["Subject"] = one_line(subject)
    msg["Date"] = formatdate(date, localtime=False, usegmt=True)
    msg["Message-ID"] = one_line(message_id or make_msgid(domain="digestd.local"))
    msg["MIME-Version"] = "1.0"
    for name, value in (headers or {}).items():
        msg[name] = one_line(value)
    msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    if html is not None:
        msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg


class _UrlListHeader(UnstructuredHeader):
    """List-Unsubscribe (RFC 2369): `<url>, <mailto:…>` written as is.

    The email package folds long unstructured headers by RFC 2047-encoding any word longer
    than a line (a signed URL always is), and mail providers do not decode encoded words
    there, so the one-click unsubscribe would silently vanish. RFC 2369 allows folding only
    between entries; an entry itself stays whole (the hard limit is 998 characters)."""

    def fold(self, *, policy: email_policy.Policy) -> str:
        value = str(self)
        if not value.isascii() or len(self.name) + 2 + len(value) > 998:
            return super().fold(policy=policy)
        return _list_unsubscribe_line(self.name, value, policy.linesep)


def _list_unsubscribe_line(name: str, value: str, linesep: str) -> str:
    # Fold only between `<…>` entries (a comma inside a URL stays where it is).
    entries = [e.strip() for e in re.split(r"(?<=>)\s*,", value)]
    return f"{name}: " + f",{linesep} ".join(entries) + linesep


_HEADERS = HeaderRegistry()
_HEADERS.map_to_type("list-unsubscribe", _UrlListHeader)
# The header class is bound when the header is set, so any policy that later writes the
# message (aiosmtplib uses policy.SMTP) keeps List-Unsubscribe intact.
DIGEST_POLICY = email_policy.default.clone(header_factory=_HEADERS)


def list_id(from_address: str) -> str:
    """The List-Id (RFC 2919) of this installation's digest: `digestd <digest.DOMAIN>`."""
    _, addr = parseaddr(from_address)
    domain = addr.rpartition("@")[2].strip().lower() or "localhost"
    return f"Research paper digest <digest.{domain}>"


def list_unsubscribe(url: str, mailto: str = "") -> str:
    """The List-Unsubscribe value: the https link, and the `mailto:` only when one is given
    (an address something reads: never the From address, where nobody does)."""
    return f"<{url}>, <{mailto}>" if mailto else f"<{url}>"


def build_digest_message(
    *,
    sender: str,
    to_email: str,
    to_name: str = "",
    subject: str,
    text: str,
    html: str | None,
    message_id: str,
    unsubscribe_url: str,
    when: datetime,
    mailto: str = "",
    list_headers: Mapping[str, str] | None = None,
) -> EmailMessage:
    """One personal digest: multipart/alternative (or text only), with RFC 8058 one-click
    unsubscribe headers. Every header value is flattened to one line, and the recipient is
    set through `Address`, so nothing from a feed or a profile can add or split a header."""
    msg = EmailMessage(policy=DIGEST_POLICY)
    msg["From"] = one_line(sender)
    msg["To"] = Address(display_name=one_line(to_name), addr_spec=one_line(to_email))
    msg["Subject"] = one_line(subject)
    msg["Date"] = formatdate(when.timestamp(), localtime=False, usegmt=True)
    msg["Message-ID"] = one_line(message_id)
    msg["MIME-Version"] = "1.0"
    msg["List-Id"] = one_line(list_id(sender))
    msg["List-Unsubscribe"] = list_unsubscribe(one_line(unsubscribe_url), one_line(mailto))
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in (list_headers or {}).items():
        msg[name] = one_line(value)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    if html is not None:
        msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg


# ---- the fast path: MIME built once per rendered digest, slots filled per subscriber ----
#
# Why: building an EmailMessage costs ≈2.2 ms per message (header parsing and folding, QP
# encoding of both parts), more than the whole SMTP exchange on a fast link (≈1.1 ms in
# benchmarks/bench_delivery.py). Every subscriber of one profile gets the same digest but
# for a handful of values, so the email package builds the message ONCE per rendered body
# and flattens it to bytes; per subscriber we only join those bytes with the subscriber's
# values, each encoded for where it goes:
# - headers (To, Date, Message-ID, List-Unsubscribe) are written as whole lines prepended to
#   the shared headers (header order carries no meaning, RFC 5322 3.6). Each value is
#   one_line'd first; To goes through `formataddr` (quoting, RFC 2047 for a non-ASCII name).
#   Anything unusual (a long or non-ASCII line, a non-ASCII address) is folded by the email
#   package instead (`_header_lines_slow`), so the fast path only handles what it provably
#   writes the same way.
# - the bodies keep quoted-printable (7-bit safe, any line length, no 8BITMIME needed).
#   Each literal run of the rendered body is QP-encoded once (binascii.b2a_qp, the C
#   encoder), and each slot sits between soft line breaks ("=\r\n"), i.e. on an encoded
#   line of its own: the values are QP-encoded per subscriber and no soft break can ever
#   split a placeholder, because the placeholders are never in the encoded text at all
#   (the body is split on them before encoding). Soft breaks decode to nothing, so the
#   decoded parts are exactly the reference's (`build_digest_message`; tests compare).
# `build_digest_message` stays the reference and the path for anything the fast path
# declines.

_MAX_LINE = 78  # RFC 5322 2.1.1: lines SHOULD stay within 78 characters


def _qp(text: str) -> bytes:
    """Quoted-printable of `text` (UTF-8) with CRLF line ends."""
    return binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")


def _normalize_newlines(text: str) -> str:
    # What EmailMessage.set_content does to text (bytes.splitlines: \r\n, \r, \n).
    return text.replace("\r\n", "\n").replace("\r", "\n")


@dataclass(frozen=True)
class SlotPart:
    """One MIME text part of a rendered digest: alternating literal text and slot names
    (`[literal, slot, literal, …, literal]`), as `render.DigestBody.parts` gives them."""

    subtype: str  # "plain" or "html"
    parts: Sequence[str]


@dataclass(frozen=True)
class DigestTemplate:
    """A digest's message as bytes with holes for one subscriber's values (see above)."""

    sender: str  # envelope sender (the address of DIGESTD_FROM) when there is no VERP
    # bytes are written as they are; (subtype, slot) pieces take that slot's encoded value.
    pieces: tuple[bytes | tuple[str, str], ...]

    def fill(
        self,
        *,
        to_email: str,
        to_name: str,
        message_id: str,
        unsubscribe_url: str,
        date: str,
        values: Mapping[str, Mapping[str, str]],
        mailto: str = "",
    ) -> bytes | None:
        """The message for one subscriber, or None when it needs the reference path (a
        non-ASCII address, which needs SMTPUTF8). `values` maps a part's subtype to its
        slot values, already escaped for that part (HTML); `date` is `format_date(...)`."""
        to_email = one_line(to_email)
        if not to_email.isascii():
            return None
        head = _header_lines(
            to_email,
            one_line(to_name),
            one_line(message_id),
            one_line(unsubscribe_url),
            one_line(mailto),
            date,
        )
        encoded: dict[tuple[str, str], bytes] = {}
        out = [head]
        for piece in self.pieces:
            if isinstance(piece, bytes):
                out.append(piece)
                continue
            value = encoded.get(piece)
            if value is None:
                subtype, slot = piece
                text = _normalize_newlines(values[subtype][slot])
                # Soft line breaks around the value: an encoded line of its own.
                value = encoded[piece] = b"=\r\n" + _qp(text) + b"=\r\n"
            out.append(value)
        return b"".join(out)


def format_date(when: datetime) -> str:
    """The Date header value for `when` (computed once per batch, not per message)."""
    return formatdate(when.timestamp(), localtime=False, usegmt=True)


def _header_lines(
    to_email: str, to_name: str, message_id: str, url: str, mailto: str, date: str
) -> bytes:
    to = formataddr((to_name, to_email)) if to_name else to_email
    lines = [f"To: {to}", f"Date: {date}", f"Message-ID: {message_id}"]
    unsubscribe = list_unsubscribe(url, mailto)
    if (
        all(len(line) <= _MAX_LINE for line in lines)
        and to_name.isascii()
        and message_id.isascii()
        and message_id.startswith("<")
        and message_id.endswith(">")
        and " " not in message_id
        and unsubscribe.isascii()
        and len(unsubscribe) <= 900
    ):
        lines.append(_list_unsubscribe_line("List-Unsubscribe", unsubscribe, "\r\n"))
        return ("\r\n".join(lines[:3]) + "\r\n" + lines[3]).encode("ascii")
    return _header_lines_slow(to_email, to_name, message_id, url, mailto, date)


def _header_lines_slow(
    to_email: str, to_name: str, message_id: str, url: str, mailto: str, date: str
) -> bytes:
    # The email package folds and encodes what the fast path declined (rare: long names).
    msg = EmailMessage(policy=DIGEST_POLICY)
    msg["To"] = Address(display_name=to_name, addr_spec=to_email)
    msg["Date"] = date
    msg["Message-ID"] = message_id
    msg["List-Unsubscribe"] = list_unsubscribe(url, mailto)
    smtp = DIGEST_POLICY.clone(linesep="\r\n")
    return b"".join(smtp.fold_binary(name, value) for name, value in msg.items())


def build_digest_template(
    *,
    sender: str,
    subject: str,
    parts: Sequence[SlotPart],
    list_headers: Mapping[str, str] | None = None,
) -> DigestTemplate:
    """Build the shared part of a digest once (email package) and flatten it to bytes with
    holes for the per-subscriber headers and slot values. `parts`: text, then maybe HTML;
    `list_headers`: List-Subscribe / List-Help, the same for everyone."""
    shared = tuple((list_headers or {}).items())
    skeleton = _skeleton(sender, subject, tuple(p.subtype for p in parts), shared)
    pieces: list[bytes | tuple[str, str]] = [skeleton[0]]
    for part, after in zip(parts, skeleton[1:], strict=True):
        pieces.extend(_encoded_body(part))
        pieces.append(after)
    merged: list[bytes | tuple[str, str]] = []
    for piece in pieces:  # adjacent literals as one bytes object: fewer joins per message
        if isinstance(piece, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] += piece
        elif piece != b"":
            merged.append(piece)
    return DigestTemplate(
        sender=parseaddr(sender)[1],
        pieces=tuple(merged),
    )


@lru_cache(maxsize=64)
def _skeleton(
    sender: str,
    subject: str,
    subtypes: tuple[str, ...],
    shared: tuple[tuple[str, str], ...] = (),
) -> tuple[bytes, ...]:
    """The shared headers and MIME structure, split where each part's body goes.

    Digests differ in subject (date, count) and format only, so the email package's ≈2 ms
    are paid per distinct (subject, format), not per render. Sharing a multipart boundary
    between messages is safe: it is `===…==`, and quoted-printable text never holds "=="
    (every "=" starts an escape or a soft line break)."""
    msg = EmailMessage(policy=DIGEST_POLICY)
    msg["From"] = one_line(sender)
    msg["Subject"] = one_line(subject)
    msg["MIME-Version"] = "1.0"
    msg["List-Id"] = one_line(list_id(sender))
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in shared:
        msg[name] = one_line(value)
    msg["Auto-Submitted"] = "auto-generated"
    # Each part's payload is a random sentinel line, cut out below: the email package
    # writes the MIME structure, headers and boundaries, the bodies go in its place.
    sentinels = [f"digestd{secrets.token_hex(16)}" for _ in subtypes]
    for i, (subtype, sentinel) in enumerate(zip(subtypes, sentinels, strict=True)):
        add = msg.set_content if i == 0 else msg.add_alternative
        add(sentinel, subtype=subtype, charset="utf-8", cte="quoted-printable")
    rest = msg.as_bytes(policy=DIGEST_POLICY.clone(linesep="\r\n"))
    out: list[bytes] = []
    for sentinel in sentinels:
        token = sentinel.encode("ascii") + b"\r\n"
        if rest.count(token) != 1:
            raise ValueError("digest template: a part's sentinel is not unique")
        before, rest = rest.split(token)
        out.append(before)
    out.append(rest)
    return tuple(out)


def _encoded_body(part: SlotPart) -> list[bytes | tuple[str, str]]:
    # The text as set_content stores it: normalized line ends, ending in one.
    parts = [_normalize_newlines(p) for p in part.parts]
    if not parts[-1].endswith("\n"):
        parts[-1] += "\n"
    out: list[bytes | tuple[str, str]] = []
    for i, piece in enumerate(parts):
        if i % 2:
            out.append((part.subtype, piece))
            continue
        out.append(_qp(piece))
    return out


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
        self.connections_opened = 0

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
                await self._quietly_close(client)  # type: ignore[arg-type]
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
        self.connections_opened += 1
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
