"""One inbound message, read once: its parts, headers, texts, report blocks and returned copy.

Every classifying question (is it a feedback report? a DSN? which recipients failed? which
Message-ID did the returned copy carry?) reads this view; nothing walks the message again.
Each derived value is computed on first use and kept (`cached_property`), so the work per
message is one walk of its parts and at most one decoding of each text part: linear in the
message's size, whatever the number of recipient blocks. (Before, each recipient of a DSN
walked the message and decoded its text again: time grew with the square of the blocks.)

Bounds: MAX_PARTS parts (parse.py), MAX_TEXT characters a text part, MAX_BLOCKS blocks
read of a report (the rest only counted), MAX_MESSAGE_IDS candidate Message-IDs.
"""

from __future__ import annotations

import email
import logging
import re
from dataclasses import dataclass
from email.message import Message
from functools import cached_property

from flufl.bounce import all_failures

from digestd.inbound.parse import (
    MAX_HEAD,
    MAX_PARTS,
    MAX_TEXT,
    Parsed,
    decode,
    header_text,
    one_line,
)
from digestd.inbound.parse import text_of as _decoded_text
from digestd.inbound.reading import MAX_RECIPIENTS

MAX_BLOCKS = MAX_RECIPIENTS + 1  # a DSN's per-message block, then one block a recipient
MAX_MESSAGE_IDS = 10
MAX_WHOLE = 256 * 1024  # characters of the whole message a text-form report is read from
# Report parts: their children are field blocks, not MIME parts (never walked into).
REPORT_TYPES = (
    "message/delivery-status",
    "message/global-delivery-status",
    "message/feedback-report",
)
RETURNED_TYPES = ("message/rfc822", "message/global")
RETURNED_HEADER_TYPES = ("text/rfc822-headers", "message/rfc822-headers")

# Where a report's human-readable part ends and the copy of our message begins.
_RETURNED = re.compile(
    r"^.*(copy of (the|your) (original )?message|original message (follows|headers)|"
    r"returned message|below this line|message headers? follows?|unsent message below|"
    r"bounced e-?mail|^from \S+@\S+ +\w{3} \w{3}|"
    r"^(return-path|received|dkim-signature|x-[a-z-]+):).*$",
    re.IGNORECASE | re.MULTILINE,
)
_MSGID_LINE = re.compile(r"^message-id:\s*(<[^>\s]{1,250}>)", re.IGNORECASE | re.MULTILINE)
_MSGID = re.compile(r"<[^<>\s]{1,250}@[^<>\s]{1,250}>")
_REPORT_FIELDS = re.compile(
    r"^(final-recipient|original-recipient|reporting-mta):", re.IGNORECASE | re.MULTILINE
)
_RECIPIENT_FIELD = re.compile(r"^(final|original)-recipient:", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Part:
    """One MIME part, in walk order (`index`), with its content type read once."""

    index: int
    content_type: str
    message: Message


@dataclass(frozen=True)
class Returned:
    """The copy of our message a report carries: what identifies it."""

    message_id: str = ""
    to: tuple[str, ...] = ()
    where: str = ""  # message/rfc822, text/rfc822-headers, inline, or "" (none)


@dataclass(frozen=True)
class Blocks:
    """The field blocks of a report part (lower-case names), and the blocks not read."""

    blocks: tuple[dict[str, str], ...] = ()
    more: int = 0  # recipient blocks past MAX_BLOCKS: counted only


def fields(message: Message) -> dict[str, str]:
    """One block's fields: lower-case names, decoded one-line values."""
    return {k.lower(): one_line(decode(v)) for k, v in message.items()}


def blocks_from_text(text: str) -> Blocks:
    """Field blocks written as text (a broken or encoded report): read up to MAX_BLOCKS."""
    text = text[:MAX_TEXT]
    blocks: list[dict[str, str]] = []
    more = 0
    for chunk in re.split(r"\r?\n\s*\r?\n", text):
        if len(blocks) >= MAX_BLOCKS:
            more += 1 if _RECIPIENT_FIELD.search(chunk) else 0
            continue
        try:
            block = fields(email.message_from_string(chunk.strip() + "\n\n"))
        except Exception:
            continue
        if block:
            blocks.append(block)
    return Blocks(tuple(blocks), more)


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except Exception:
        return ""


class Mail:
    """A parsed message as the classifiers read it: each question answered once, then kept."""

    def __init__(self, parsed: Parsed) -> None:
        self.parsed = parsed
        self.message = parsed.message
        self._texts: dict[int, str] = {}
        self._headers: dict[str, str] = {}
        self.parts_cut = False  # more MIME parts than MAX_PARTS: not a bounce's shape

    def header(self, name: str) -> str:
        """A top-level header's decoded one-line value ('' when absent)."""
        key = name.lower()
        if key not in self._headers:
            self._headers[key] = self.parsed.header(name)
        return self._headers[key]

    @cached_property
    def parts(self) -> tuple[Part, ...]:
        """The MIME parts, depth first, at most MAX_PARTS; a report's field blocks are not
        parts (a DSN of 40,000 recipients is one part here, not 40,000)."""
        if self.message is None:
            return ()
        out: list[Part] = []
        stack = [self.message]
        while stack:
            if len(out) >= MAX_PARTS:
                self.parts_cut = True
                break
            message = stack.pop()
            kind = _content_type(message)
            out.append(Part(len(out), kind, message))
            if kind in REPORT_TYPES or not message.is_multipart():
                continue
            payload = message.get_payload()
            if isinstance(payload, list):
                stack.extend(reversed([p for p in payload if isinstance(p, Message)]))
        return tuple(out)

    @property
    def too_many_parts(self) -> bool:
        """More MIME parts than MAX_PARTS: not the shape of any bounce or complaint."""
        return bool(self.parts) and self.parts_cut

    def of_type(self, *types: str) -> list[Part]:
        """The parts of these content types, in walk order (the top message included)."""
        return [p for p in self.parts if p.content_type in types]

    def text(self, part: Part) -> str:
        """A text part's decoded content (at most MAX_TEXT characters), decoded once."""
        if part.index not in self._texts:
            self._texts[part.index] = _decoded_text(part.message)
        return self._texts[part.index]

    @cached_property
    def first_text(self) -> str:
        """The first text/plain part's text ('' when there is none)."""
        found = self.of_type("text/plain")
        return self.text(found[0]) if found else ""

    @cached_property
    def human_text(self) -> str:
        """The human-readable half of a report: its first text part, without the returned
        copy of our message (whose headers would otherwise read as the diagnostic)."""
        found = self.of_type("text/plain", "text/html")
        if not found:
            return ""
        text = self.text(found[0])
        cut = _RETURNED.search(text)
        return (text[: cut.start()] if cut else text)[:4000]

    @cached_property
    def report_text(self) -> str:
        """`human_text`, or for a message whose MIME is broken (a multipart with no parts
        the parser could find), the text of its body up to the report's fields or the
        returned copy: what a bounce says in words."""
        if self.human_text or self.message is None:
            return self.human_text
        whole = self.whole_text
        cut = re.search(r"\r?\n\r?\n", whole)
        body = whole[cut.end() :] if cut else ""
        end = _REPORT_FIELDS.search(body)
        body = body[: end.start()] if end else body
        returned = _RETURNED.search(body)
        return (body[: returned.start()] if returned else body)[:4000]

    @cached_property
    def report_text_lower(self) -> str:
        """`report_text` in lower case (where a failed address is looked up)."""
        return self.report_text.lower()

    @cached_property
    def whole_text(self) -> str:
        """The whole message as text, at most MAX_WHOLE characters (a report whose MIME is
        broken is read from here)."""
        # The bytes as they came (decoding them is linear; regenerating a hostile message's
        # MIME tree with as_string() is not cheap).
        return self.parsed.head[:MAX_WHOLE].decode("utf-8", errors="replace")

    # ---- report parts ---------------------------------------------------------------------

    @cached_property
    def delivery_status(self) -> list[Blocks]:
        """The blocks of each message/delivery-status part (RFC 3464), in order."""
        return [
            self._blocks(p)
            for p in self.of_type("message/delivery-status", "message/global-delivery-status")
        ]

    @cached_property
    def feedback_report(self) -> dict[str, str] | None:
        """The fields of the message/feedback-report part (RFC 5965), or None."""
        found = self.of_type("message/feedback-report")
        if not found:
            return None
        merged: dict[str, str] = {}
        for block in self._blocks(found[0]).blocks:
            merged.update({k: v for k, v in block.items() if k not in merged})
        return merged

    def _blocks(self, part: Part) -> Blocks:
        payload = part.message.get_payload()
        if isinstance(payload, str):
            text = payload
            encoding = str(part.message.get("Content-Transfer-Encoding", "")).lower()
            if encoding in ("base64", "quoted-printable"):
                text = self.text(part)
            return blocks_from_text(text)
        if not isinstance(payload, list):
            return Blocks()
        subs = [p for p in payload if isinstance(p, Message)]
        blocks: list[dict[str, str]] = []
        more = 0
        for sub in subs:
            if len(blocks) >= MAX_BLOCKS:  # counted, not read
                more += 1 if ("final-recipient" in sub or "original-recipient" in sub) else 0
                continue
            blocks.append(fields(sub))
        if len(subs) == 1:
            # Some MTAs put the whole report in one block's body: read it too.
            body = subs[0].get_payload()
            if isinstance(body, str) and ":" in body:
                extra = blocks_from_text(body)
                blocks.extend(extra.blocks)
                more += extra.more
        return Blocks(tuple(blocks), more)

    # ---- the copy of our message ----------------------------------------------------------

    @cached_property
    def returned(self) -> Returned:
        """Message-ID and To of the returned copy of our message: a message/rfc822 part, a
        text/rfc822-headers part, or a copy pasted into the text after a marker."""
        for part in self.parts[1:]:
            inner: Message | None = None
            if part.content_type in RETURNED_TYPES:
                payload = part.message.get_payload()
                if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                    inner = payload[0]
            elif part.content_type in RETURNED_HEADER_TYPES:
                try:
                    text = self.text(part) or str(part.message.get_payload())[:MAX_TEXT]
                    inner = email.message_from_string(text)
                except Exception:
                    inner = None
            if inner is not None:
                found = _identity(inner, part.content_type)
                if found.message_id or found.to:
                    return found
        return self._returned_inline()

    def _returned_inline(self) -> Returned:
        found = self.of_type("text/plain")
        if not found:
            return Returned()
        text = self.text(found[0])
        marker = _RETURNED.search(text)
        if marker is None:
            return Returned()
        said = marker.group(0).lower()
        starts_headers = said.startswith(("return-path", "received", "dkim", "x-"))
        rest = text[marker.start() :] if starts_headers else text[marker.end() :]
        try:
            inner = email.message_from_string(rest.lstrip("\r\n"))
        except Exception:
            return Returned()
        return _identity(inner, "inline")

    @cached_property
    def message_id_in_text(self) -> str:
        """A Message-ID quoted in a text part (a returned header block pasted as text)."""
        for part in self.of_type("text/plain"):
            match = _MSGID_LINE.search(self.text(part))
            if match:
                return match.group(1)
        return ""

    @cached_property
    def message_ids(self) -> list[str]:
        """Message-IDs that may be of a message we sent: the returned copy's, In-Reply-To and
        References, and those quoted in the text; at most MAX_MESSAGE_IDS, in that order."""
        found: list[str] = []
        candidates = [self.returned.message_id, self.message_id_in_text]
        candidates += _MSGID.findall(self.header("In-Reply-To")[:2000])
        candidates += _MSGID.findall(self.header("References")[:4000])
        for part in self.of_type("text/plain"):
            candidates += [m.group(1) for m in _MSGID_LINE.finditer(self.text(part))]
        for value in candidates:
            value = bracketed(value)
            if value and value not in found:
                found.append(value)
            if len(found) >= MAX_MESSAGE_IDS:
                break
        return found

    # ---- flufl.bounce (Mailman's detectors of non-standard bounces) ------------------------

    @cached_property
    def flufl(self) -> tuple[frozenset[str], frozenset[str]]:
        """The (temporary, permanent) failed addresses flufl.bounce finds, run once."""
        if self.message is None or self.too_many_parts:
            # flufl.bounce walks every part and every line again, in each of its detectors
            # (50,000 empty parts: 43 s). No bounce has more than MAX_PARTS parts.
            return frozenset(), frozenset()
        # flufl.bounce logs a traceback for a detector that chokes, then re-raises: the
        # exception is handled here, so its log line would only be noise (or look like a crash).
        logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)
        message = self.message
        if self.parsed.size - self.parsed.unread > MAX_HEAD:
            # Its detectors read every line, each of them (1 MB of text: 1.8 s): they get the
            # first MAX_HEAD bytes, where a bounce names what failed.
            try:
                message = email.message_from_bytes(self.parsed.head)
            except Exception:
                return frozenset(), frozenset()
        try:
            temporary, permanent = all_failures(message)
        except Exception:  # a detector choking on hostile input: no verdict, not a crash
            return frozenset(), frozenset()
        return _as_text(temporary), _as_text(permanent)


def _identity(inner: Message, where: str) -> Returned:
    mid = header_text(inner, "Message-ID").strip()
    to = (header_text(inner, "To"),) if inner.get("To") else ()
    return Returned(mid, to, where if (mid or to) else "")


def _as_text(addresses: object) -> frozenset[str]:
    out = set()
    for a in addresses or ():  # type: ignore[attr-defined]
        out.add((a.decode("utf-8", "replace") if isinstance(a, bytes) else str(a)).strip("<> "))
    return frozenset(out)


def bracketed(message_id: str) -> str:
    """A Message-ID as we store it: `<…>`, one line ('' when empty)."""
    value = one_line(message_id or "", 255).strip()
    if not value:
        return ""
    return value if value.startswith("<") else f"<{value.strip('<>')}>"
