"""MIME building with the standard `email` package: a digest's message bytes and headers.

`build_digest_message` is the reference (the email package builds the whole message);
`build_digest_template` + `DigestTemplate.fill` is the fast path used for every digest, which
builds the shared part once per rendered body and fills in each subscriber's values.
Sending the bytes is `digestd.mail.smtp_pool`'s job.
"""

from __future__ import annotations

import binascii
import hashlib
import re
import secrets
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email import policy as email_policy
from email.headerregistry import Address, BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid, parseaddr
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING

from digestd.mail.dkim import CanonicalBody, DkimSigner, Unsigned, relaxed_body
from digestd.mail.idn import ascii_domain, ascii_mailbox, needs_smtputf8


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
    msg["From"] = ascii_mailbox(one_line(sender))  # IDN domains as A-labels (mail.idn)
    msg["To"] = ascii_mailbox(one_line(to))
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


if TYPE_CHECKING:
    # The header registry mixes each header class with BaseHeader at runtime; typeshed
    # types the mixins on their own, so the type checker is told what the class becomes.
    class _RegistryHeader(UnstructuredHeader, BaseHeader): ...
else:
    _RegistryHeader = UnstructuredHeader


class _UrlListHeader(_RegistryHeader):
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
_WIRE_POLICY = DIGEST_POLICY.clone(linesep="\r\n")  # headers as they go on the wire
_SUBJECT_LINE = b"\r\nSubject: digestd-subject\r\n"  # a template's stand-in (_skeleton)


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
    sender = ascii_mailbox(one_line(sender))  # IDN domains as A-labels (mail.idn)
    msg["From"] = sender
    to_email = ascii_domain(one_line(to_email))
    if needs_smtputf8(to_email):
        # `Address` refuses to parse a non-ASCII local part, but takes it as its parts: it
        # is written as UTF-8 when the message goes out with SMTPUTF8 (smtp_pool checks
        # that the relay offers it; email-validator checked the address at sign-up).
        local, _, domain = to_email.rpartition("@")
        msg["To"] = Address(display_name=one_line(to_name), username=local, domain=domain)
    else:
        msg["To"] = Address(display_name=one_line(to_name), addr_spec=to_email)
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
# and flattens it to bytes; per subscriber we only fill those bytes in with the subscriber's
# values, each encoded for where it goes:
# - headers (To, Date, Message-ID, List-Unsubscribe) are written as whole lines prepended to
#   the shared headers (header order carries no meaning, RFC 5322 3.6). Each value is
#   one_line'd first; To goes through `formataddr` (quoting, RFC 2047 for a non-ASCII name).
#   Anything unusual (a long or non-ASCII line, a non-ASCII address) is folded by the email
#   package instead (`_header_lines_slow`), so the fast path only handles what it provably
#   writes the same way.
# - the bodies keep quoted-printable (7-bit safe, any line length, no 8BITMIME needed).
#   The literal runs of the rendered body are QP-encoded once per template (binascii.b2a_qp,
#   the C encoder, one call per part: `_encoded_body`), and each slot sits between soft
#   line breaks ("=\r\n"), i.e. on an encoded line of its own: the values are QP-encoded
#   per subscriber and no soft break can ever split a placeholder, because the
#   placeholders are never in the encoded text at all (the body is split on them before
#   encoding). Soft breaks decode to nothing, so the decoded parts are exactly the
#   reference's (`build_digest_message`; tests compare).
# `build_digest_message` stays the reference and the path for anything the fast path
# declines.

_MAX_LINE = 78  # RFC 5322 2.1.1: lines SHOULD stay within 78 characters


def _qp(text: str) -> bytes:
    """Quoted-printable of `text` (UTF-8) with CRLF line ends."""
    return binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")


# Wire form (RFC 5321 4.5.2): a template's bytes are kept as they go on the wire after DATA,
# i.e. with a "." that starts a line doubled, so sending needs no pass over each message
# (`smtp_pool.send_wire`). Every piece of a template starts at the start of a line (headers,
# MIME structure, and bodies cut between soft line breaks), so each piece is stuffed on its
# own: once per template for the shared pieces, per subscriber only for encoded values
# (quoted-printable breaks long lines, so a line can start with a "." of the text). Header
# lines start with a name or, folded, with white space: never with a ".".
_LINE_START_DOT = re.compile(rb"(?m)^\.")
_STUFFED_DOT = re.compile(rb"(?m)^\.\.")
# A template's format holds "%%" (a literal "%") and "%s" (a slot) only.
_FORMAT_TOKEN = re.compile(rb"(%%|%s)")
# Text that is its own quoted-printable on one line (RFC 2045 6.7: printable ASCII but "=",
# no trailing white space, at most 76 characters, not starting with "."): a vote MAC, say.
_QP_AS_IS = re.compile(
    r"[\x21-\x2d\x2f-\x3c\x3e-\x7e]"  # first: printable, not "=" or "."
    r"(?:[\x20-\x3c\x3e-\x7e]{0,74}[\x21-\x3c\x3e-\x7e])?"  # then: no "=", no space last
)


def dot_stuff(data: bytes) -> bytes:
    """`data` with each "." that starts a line doubled (RFC 5321 4.5.2); untouched, and not
    copied, when no line starts with one (the usual case: one search)."""
    return _LINE_START_DOT.sub(b"..", data) if data[:1] == b"." or b"\n." in data else data


def _qp_wire(text: str) -> bytes:
    return dot_stuff(_qp(_normalize_newlines(text)))


def from_wire(data: bytes) -> bytes:
    """A message in wire form (`DigestTemplate.fill`) as plain message bytes: each "." that
    starts a line undoubled."""
    return _STUFFED_DOT.sub(b".", data)


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
    """A digest's message as bytes with holes for one subscriber's values (see above), in
    wire form (dot-stuffed, see `_LINE_START_DOT`)."""

    sender: str  # envelope sender (the address of DIGESTD_FROM) when there is no VERP
    # The shared bytes as a %-format (a literal "%" doubled): one `%s` per slot, in order.
    # One C-level format per message instead of a Python join over ~180 pieces.
    body: bytes
    # Per MIME part, in order: its subtype and the names of its slots, one per `%s`.
    slots: tuple[tuple[str, tuple[str, ...]], ...]

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
        signer: DkimSigner | None = None,
    ) -> bytes | None:
        """The message for one subscriber in SMTP wire form (`from_wire` reads it back), or
        None when it needs the reference path (a non-ASCII address, which needs SMTPUTF8).
        `values` maps a part's subtype to its slot values, already escaped for that part
        (HTML); `date` is `format_date(...)`; with a `signer`, DKIM-signed."""
        filled = self.filled(to_email, to_name, message_id, unsubscribe_url, date, values, mailto)
        if filled is None or signer is None:
            return None if filled is None else filled.message
        return filled.signed(signer)

    def filled(
        self,
        to_email: str,
        to_name: str,
        message_id: str,
        unsubscribe_url: str,
        date: str,
        values: Mapping[str, Mapping[str, str]],
        mailto: str = "",
    ) -> Filled | None:
        """`fill` unsigned, kept with what its signature needs (`Filled.unsigned`)."""
        to_email = ascii_domain(one_line(to_email))  # an IDN domain as A-labels (mail.idn)
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
        encoded: dict[str, bytes] = {}  # by value: a link is the same in both parts
        args = []
        for subtype, names in self.slots:
            part_values = values[subtype]
            for slot in names:
                text = part_values[slot]
                value = encoded.get(text)
                if value is None:
                    # Most values are their own quoted-printable as they are: vote MACs (hex
                    # digits, told by str methods, faster than the regex) and short links.
                    # (The pattern matches at most 76 characters: a signed link is longer.)
                    if len(text) <= 76 and (
                        (text.isalnum() and text.isascii()) or _QP_AS_IS.fullmatch(text)
                    ):
                        qp = text.encode("ascii")
                    else:
                        qp = _qp_wire(text)
                    # Soft line breaks around the value: an encoded line of its own.
                    value = encoded[text] = b"=\r\n" + qp + b"=\r\n"
                args.append(value)
        return Filled(self, head, args, head + self.body % tuple(args))

    @cached_property
    def _canonical(self) -> tuple[bytes, CanonicalBody]:
        """The shared header lines and the body's shared pieces canonicalized for DKIM,
        once per template (and only when signing: they cost about the body's size)."""
        pieces: list[bytes] = []
        current = bytearray()
        for i, token in enumerate(_FORMAT_TOKEN.split(self.body)):
            if i % 2 == 0:
                current += token
            elif token == b"%%":
                current += b"%"
            else:  # a slot
                pieces.append(from_wire(bytes(current)))
                current = bytearray()
        pieces.append(from_wire(bytes(current)))
        shared, _, first = pieces[0].partition(b"\r\n\r\n")
        return shared + b"\r\n", CanonicalBody.of([first, *pieces[1:]])


@dataclass(frozen=True, slots=True)
class Filled:
    """One subscriber's message (`DigestTemplate.filled`), unsigned: `message` in wire form,
    and its per-message header lines and slot values (the signature is computed from them)."""

    template: DigestTemplate
    head: bytes
    args: Sequence[bytes]
    message: bytes

    def unsigned(self, signer: DkimSigner) -> Unsigned:
        """Its DKIM signatures up to the private-key operations (`DkimSigner.prepare`): the
        body hash from the template's shared pieces and the values (see dkim.CanonicalBody)."""
        shared, canonical = self.template._canonical
        body_hash = canonical.hash(self.args)
        if body_hash is None:  # a body ending in empty lines: the whole-body path
            body = from_wire(self.message).partition(b"\r\n\r\n")[2]
            body_hash = hashlib.sha256(relaxed_body(body)).digest()
        return signer.prepare(self.head, body_hash, shared)

    def signed(self, signer: DkimSigner) -> bytes:
        """The message with its DKIM-Signature lines in front, signed here."""
        unsigned = self.unsigned(signer)
        return signer.complete(unsigned, signer.sign_all(unsigned)) + self.message


def format_date(when: datetime) -> str:
    """The Date header value for `when` (computed once per batch, not per message)."""
    return formatdate(when.timestamp(), localtime=False, usegmt=True)


def _header_lines(
    to_email: str, to_name: str, message_id: str, url: str, mailto: str, date: str
) -> bytes:
    to = formataddr((to_name, to_email)) if to_name else to_email
    unsubscribe = list_unsubscribe(url, mailto)
    if (
        len(to) <= _MAX_LINE - 4  # "To: "
        and len(date) <= _MAX_LINE - 6  # "Date: "
        and len(message_id) <= _MAX_LINE - 12  # "Message-ID: "
        and to_name.isascii()
        and message_id.isascii()
        and message_id[:1] == "<"
        and message_id[-1:] == ">"
        and " " not in message_id
        and unsubscribe.isascii()
        and len(unsubscribe) <= 900
    ):
        if ">" in url or ">" in mailto:  # entries found as `_list_unsubscribe_line` finds them
            listed = _list_unsubscribe_line("List-Unsubscribe", unsubscribe, "\r\n")
        elif mailto:  # the two entries of `list_unsubscribe`, folded between them
            listed = f"List-Unsubscribe: <{url}>,\r\n <{mailto}>\r\n"
        else:
            listed = f"List-Unsubscribe: <{url}>\r\n"
        return f"To: {to}\r\nDate: {date}\r\nMessage-ID: {message_id}\r\n{listed}".encode("ascii")
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
    return b"".join(_WIRE_POLICY.fold_binary(name, value) for name, value in msg.items())


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
    skeleton = _skeleton(sender, tuple(p.subtype for p in parts), shared)
    head = skeleton[0].replace(_SUBJECT_LINE, b"\r\n" + subject_line(subject), 1)
    body = [_as_format(head)]
    slots = []
    for part, after in zip(parts, skeleton[1:], strict=True):
        encoded, names = _encoded_body(part)
        body += [encoded, _as_format(after)]
        slots.append((part.subtype, names))
    envelope = parseaddr(ascii_mailbox(sender))[1]
    return DigestTemplate(sender=envelope, body=b"".join(body), slots=tuple(slots))


def _as_format(literal: bytes) -> bytes:
    # Shared bytes in wire form, as part of the template's %-format.
    return dot_stuff(literal).replace(b"%", b"%%")


def subject_line(subject: str) -> bytes:
    """The Subject line as the email package writes it in a message (encoded, folded)."""
    return _WIRE_POLICY.fold_binary(*_WIRE_POLICY.header_store_parse("Subject", one_line(subject)))


@lru_cache(maxsize=64)
def _skeleton(
    sender: str, subtypes: tuple[str, ...], shared: tuple[tuple[str, str], ...]
) -> tuple[bytes, ...]:
    """The shared headers (the Subject line a stand-in) and MIME structure, split where each
    part's body goes: the email package's ≈2 ms paid per format, not per subject. Sharing a
    multipart boundary is safe: it is `===…==`, and quoted-printable never holds "==" (every
    "=" starts an escape or a soft line break)."""
    msg = EmailMessage(policy=DIGEST_POLICY)
    sender = ascii_mailbox(one_line(sender))
    msg["From"] = sender
    msg["Subject"] = "digestd-subject"
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


def _encoded_body(part: SlotPart) -> tuple[bytes, tuple[str, ...]]:
    """One part's body in wire form as a %-format (a `%s` per slot) and its slot names.

    The literal runs are encoded in ONE quoted-printable pass: joined with a sentinel line
    between them, encoded, and cut at the encoded sentinel lines. This is the same as
    encoding each run on its own (tests compare both over random text), because
    quoted-printable is line by line: each run starts a line (column 0), and its last line
    ends before a line break here and at the end of the data there, which the encoder
    treats alike (trailing white space and a lone "." escaped, no soft break needed). One
    call instead of one per run (≈50 a digest) was a fifth of building a digest that is
    rendered for one voter."""
    # The text as set_content stores it: normalized line ends, ending in one.
    literals = [_normalize_newlines(p) for p in part.parts[0::2]]
    if not literals[-1].endswith("\n"):
        literals[-1] += "\n"
    # Slot names repeat in every digest of a pass (vote-<entry>-up, …): one string each.
    names = tuple(sys.intern(name) for name in part.parts[1::2])
    sentinel = f"digestd{secrets.token_hex(8)}"
    text = f"\n{sentinel}\n".join(literals)
    while len(literals) > 1 and text.count(sentinel) != len(literals) - 1:
        sentinel = f"digestd{secrets.token_hex(8)}"  # feed text held it: practically never
        text = f"\n{sentinel}\n".join(literals)
    encoded = _as_format(_qp(text)).split(f"\r\n{sentinel}\r\n".encode("ascii"))
    if len(encoded) != len(literals):
        raise ValueError("digest template: a slot's sentinel line was not kept")
    return b"%s".join(encoded), names
