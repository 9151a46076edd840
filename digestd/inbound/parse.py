"""Defensive parsing of inbound mail: bounded size, bounded headers, never an exception.

The stdlib `email` parser (compat32: tolerant, and what flufl.bounce expects) does the
work; this module only bounds what it is given and what is kept.

Why at most MAX_PARSED bytes go through the parser, whatever DIGESTD_INBOUND_MAX_BYTES
allows: the parser's time is linear in the bytes but steep for hostile shapes (a message
of a million empty MIME parts, or of 300,000 one-line DSN blocks, takes it 6-26 s
for 10 MB on our shared 2-core machine), and inbound mail is read by one worker. Everything a
bounce, a complaint or a command is read from sits at the start: the report, the returned
headers, the first text part. So a longer message is read in its first MAX_PARSED bytes
(`Parsed.unread` says how many were not) and one message cannot hold the worker for long.
"""

from __future__ import annotations

import email
import email.header
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message

MAX_HEADERS = 100  # header fields kept in the record
MAX_HEADER_VALUE = 1000  # characters kept of one header value
MAX_PARTS = 200  # MIME parts looked at in one message
MAX_TEXT = 64 * 1024  # characters read from one text part
MAX_PARSED = 512 * 1024  # bytes of one message given to the MIME parser (see above)
MAX_HEAD = 256 * 1024  # bytes kept as they came (a report whose MIME is broken is read there)


@dataclass
class Parsed:
    """A parsed message, or why it could not be (`problem`), with its capped headers."""

    message: Message | None
    size: int
    headers: list[list[str]] = field(default_factory=list)
    problem: str = ""
    head: bytes = b""  # the first MAX_HEAD bytes, as they came
    unread: int = 0  # bytes past MAX_PARSED, not parsed

    def header(self, name: str) -> str:
        """One header's decoded, one-line value ('' when absent or undecodable)."""
        if self.message is None:
            return ""
        return header_text(self.message, name)


def one_line(value: str, limit: int = MAX_HEADER_VALUE) -> str:
    """Text on one line, shortened: safe for a record, a log line or a header."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def decode(value: object) -> str:
    """A header value as text: RFC 2047 words decoded, anything undecodable replaced."""
    if value is None:
        return ""
    try:
        return str(email.header.make_header(email.header.decode_header(str(value))))
    except Exception:  # hostile encodings: keep the raw text rather than fail
        return str(value)


def header_text(message: Message, name: str) -> str:
    """The first `name` header of `message`, decoded and on one line."""
    try:
        value = message.get(name)
    except Exception:  # pragma: no cover - compat32 returns strings; kept as a guard
        return ""
    return one_line(decode(value)) if value is not None else ""


def parse(raw: bytes, max_bytes: int) -> Parsed:
    """Parse `raw`; a message over `max_bytes` keeps only its header block (`problem` says so)."""
    size = len(raw)
    problem = ""
    if size > max_bytes:
        head, _, _ = raw[:65536].partition(b"\n\n")
        raw = head
        problem = f"message is {size} bytes, more than the {max_bytes} read"
    if not raw.strip():
        return Parsed(None, size, problem=problem or "empty message")
    unread = max(0, len(raw) - MAX_PARSED)
    if unread:
        raw = raw[:MAX_PARSED]
    try:
        message = email.message_from_bytes(raw)
        headers = [
            [one_line(decode(k), 100), one_line(decode(v))]
            for k, v in message.items()[:MAX_HEADERS]
        ]
    except Exception as exc:  # any parser failure is an unrecognized record, not a crash
        return Parsed(None, size, problem=one_line(f"unparseable: {exc}", 200))
    if not headers and not problem:
        problem = "no headers"
    return Parsed(
        message, size, headers=headers, problem=problem, head=raw[:MAX_HEAD], unread=unread
    )


def walk(message: Message) -> Iterator[Message]:
    """The message's MIME parts, depth first, at most MAX_PARTS (hostile nesting is cut)."""
    stack = [message]
    seen = 0
    while stack and seen < MAX_PARTS:
        part = stack.pop()
        seen += 1
        yield part
        payload = part.get_payload() if part.is_multipart() else None
        if isinstance(payload, list):
            stack.extend(reversed([p for p in payload if isinstance(p, Message)]))


def text_of(part: Message) -> str:
    """A text part's decoded content, at most MAX_TEXT characters ('' if it is not text)."""
    if part.is_multipart():
        return ""
    try:
        data = part.get_payload(decode=True)
    except Exception:
        return ""
    if not isinstance(data, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        text = data[: MAX_TEXT * 4].decode(charset, errors="replace")
    except LookupError:
        text = data[: MAX_TEXT * 4].decode("utf-8", errors="replace")
    return text[:MAX_TEXT]
