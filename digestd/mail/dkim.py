"""DKIM signing (RFC 6376, relaxed/relaxed): RSA-SHA256, and optionally Ed25519-SHA256
(RFC 8463) beside it, never instead.

Why by hand and not dkimpy's `sign`: dkimpy signs RSA in pure Python (≈8–13 ms a message on
this machine, more than the rest of sending one), and it canonicalizes the whole message
again for each one. Here the private-key operation goes through OpenSSL (`cryptography`,
≈0.27 ms for RSA-2048, ≈0.03 ms for Ed25519), and a digest's shared body is canonicalized
once per template (`CanonicalBody`): per message only its few filled-in values are, and the
SHA-256 of the body runs over bytes already canonical. dkimpy stays what the tests verify
with, beside OpenDKIM.

What is signed is the exact message that goes out: the signature lines are written in front
of its headers, nothing after signing changes a byte (the SMTP dot-stuffing of the wire
form is undone by the receiving server before it verifies).
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

if TYPE_CHECKING:
    from digestd.core.config import Settings

# What h= covers, in this order, each as often as the message has it: the one-click
# unsubscribe headers (RFC 8058 requires them signed) and everything that says who and
# what. The names in OVERSIGNED are listed once more than they occur, so a header of that
# name added later (a second From, a forged List-Unsubscribe) breaks the signature.
SIGNED_HEADERS = (
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "list-subscribe",
    "list-help",
    "auto-submitted",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
)
OVERSIGNED = frozenset(
    {
        "from",
        "reply-to",
        "to",
        "cc",
        "subject",
        "date",
        "message-id",
        "list-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
    }
)
_WANTED_NAMES = frozenset(name.encode("ascii") for name in SIGNED_HEADERS)
# The tags after bh=: the empty b= on a line of its own, and canonicalized (relaxed).
_B_FOLDED = b";\r\n\tb="
_B_CANONICAL = b"; b="

_WSP_RUN = re.compile(rb"[ \t]+")
_WSP_BEFORE_CRLF = re.compile(rb"[ \t]+\r\n")
_LINE_ENDS = re.compile(rb"\r\n|\r|\n")
_STUFFED_DOT = re.compile(rb"(?m)^\.\.")


class DkimKeyError(ValueError):
    """A key file that cannot be used; one line naming the file."""


# ---- canonicalization (RFC 6376 3.4.2 and 3.4.4) --------------------------------------


def relax(data: bytes) -> bytes:
    """Relaxed body canonicalization of a piece of body that starts at the start of a line:
    white space at a line's end removed, other runs of it made one space. Trailing empty
    lines are the caller's (`finish`). Untouched when there is nothing to change (one
    search each: most filled-in values)."""
    if b"\t" in data or b"  " in data:
        data = _WSP_RUN.sub(b" ", data)
    if b" \r\n" in data:
        data = data.replace(b" \r\n", b"\r\n")
    return data


def finish(tail: bytes) -> bytes | None:
    """The last canonical piece of a body with its empty lines at the end removed and one
    CRLF kept; None when nothing but empty lines is left (then the caller looks further
    back)."""
    stripped = tail.rstrip(b"\r\n")
    return stripped + b"\r\n" if stripped else None


def relaxed_body(body: bytes) -> bytes:
    """The whole body canonicalized (relaxed); an empty body stays empty."""
    return finish(relax(body)) or b""


def relaxed_header(name: bytes, value: bytes) -> bytes:
    """One header field canonicalized (relaxed): name lowercased, value unfolded, white
    space runs made one space and trimmed at both ends."""
    value = value.replace(b"\r\n", b"")
    if b"\t" in value or b"  " in value:  # most values have no run to shorten (C searches)
        value = _WSP_RUN.sub(b" ", value)
    return name.strip().lower() + b":" + value.strip(b" ") + b"\r\n"


def split_headers(head: bytes) -> list[tuple[bytes, bytes]]:
    """Header fields of a CRLF header block as (name, raw value with its folding)."""
    fields: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + b"\r\n" + line)
            continue
        name, sep, value = line.partition(b":")
        if sep:
            fields.append((name, value))
    return fields


@dataclass(frozen=True)
class CanonicalBody:
    """A template's body canonicalized once: the shared pieces between its filled-in values
    (RFC 6376's relaxed rules are line by line, and every value sits on lines of its own
    after the preceding text's last partial line, which is closed by a "=" soft break: so
    each piece canonicalizes on its own). `hash(values)` is the body hash of one message,
    or None when the message needs the whole-body path (a body ending in empty lines)."""

    # The canonical pieces as a %-format, a `%s` per value (one C-level format a message,
    # then one SHA-256: a Python loop over ≈90 values cost more than the hashing).
    format: bytes | None  # None when the last piece is nothing but empty lines

    @classmethod
    def of(cls, pieces: Sequence[bytes]) -> CanonicalBody:
        """`pieces`: the body's shared parts, un-stuffed (not wire form), in order."""
        canonical = [relax(p) for p in pieces]
        last = finish(canonical[-1])
        if last is None:
            return cls(None)
        canonical[-1] = last
        return cls(b"%s".join(p.replace(b"%", b"%%") for p in canonical))

    def hash(self, values: Sequence[bytes]) -> bytes | None:
        """SHA-256 of the canonical body with `values` between the pieces; each value is in
        wire form and starts with a soft line break (`mime.DigestTemplate.fill`)."""
        if self.format is None:
            return None
        # Most values (links, MACs) need nothing: no stuffed dot, no white space to fold;
        # looked for in all of them at once (C-level searches), one by one only if found.
        canonical = tuple(values)
        joined = b"".join(canonical)
        if b"\n.." in joined or b"  " in joined or b"\t" in joined or b" \r\n" in joined:
            canonical = tuple(relax(_STUFFED_DOT.sub(b".", v)) for v in canonical)
        return hashlib.sha256(self.format % canonical).digest()


# ---- keys and signatures -------------------------------------------------------------


@dataclass(frozen=True)
class DkimKey:
    """One signing key: its algorithm tag (a=), selector (s=) and the private key."""

    selector: str
    private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

    @property
    def algorithm(self) -> str:
        return "rsa-sha256" if isinstance(self.private, rsa.RSAPrivateKey) else "ed25519-sha256"

    def sign(self, data: bytes) -> bytes:
        """The b= signature of the canonical header data (RFC 8463: Ed25519 signs its
        SHA-256)."""
        if isinstance(self.private, rsa.RSAPrivateKey):
            return self.private.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return self.private.sign(hashlib.sha256(data).digest())

    def txt_record(self) -> str:
        """The DNS TXT value that publishes this key's public half."""
        return txt_record(self.private)


def txt_record(private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> str:
    """`v=DKIM1; k=rsa; p=…` (SubjectPublicKeyInfo) or `k=ed25519` (the raw 32 bytes)."""
    public = private.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode('ascii')}"
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"


def load_private_key(path: Path) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    """An RSA or Ed25519 private key from a PEM file (PKCS#8 or PKCS#1, unencrypted)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DkimKeyError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise DkimKeyError(f"{path}: not an unencrypted PEM private key") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 1024:
            raise DkimKeyError(f"{path}: an RSA key of {key.key_size} bits is too short")
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    raise DkimKeyError(f"{path}: neither an RSA nor an Ed25519 key")


def _signed_fields(head: bytes) -> list[tuple[bytes, bytes]]:
    """(lowercased name, relaxed canonical field) of each field of `head` that h= covers."""
    out = []
    for name, value in split_headers(head):
        lname = name.strip().lower()
        if lname in _WANTED_NAMES:
            out.append((lname, relaxed_header(name, value)))
    return out


@dataclass(frozen=True, slots=True)
class _Plan:
    """How the signed header data of one shape of message is put together: a message's own
    fields (`head`: the same names in the same order) and a template's shared ones
    (`shared`, canonicalized once) in h='s order, and h= itself. Built once per shape."""

    order: tuple[int, ...]  # indexes into the head's canonical fields + `shared`
    shared: tuple[bytes, ...]
    h: str


@lru_cache(maxsize=256)
def _plan(names: tuple[bytes, ...], shared: bytes) -> _Plan:
    shared_fields = _signed_fields(shared)
    fields: dict[bytes, list[int]] = {}
    for i, name in enumerate((*names, *(name for name, _ in shared_fields))):
        fields.setdefault(name, []).append(i)
    h: list[str] = []
    order: list[int] = []
    for header in SIGNED_HEADERS:
        # Several of one name are signed from the bottom up (RFC 6376 5.4.2).
        found = fields.get(header.encode("ascii"), [])
        for i in reversed(found):
            h.append(header)
            order.append(i)
        if found and header in OVERSIGNED:
            h.append(header)  # matches no field: any added one breaks the signature
    return _Plan(
        tuple(order),
        tuple(canonical for _, canonical in shared_fields),
        _fold_list("\th=", tuple(h), ":"),
    )


@lru_cache(maxsize=16)
def _tag_list_start(
    algorithm: str, domain: str, selector: str, when: int, h: str
) -> tuple[bytes, bytes]:
    """A DKIM-Signature's tags up to bh='s value, and their relaxed canonical form (with the
    field name): the same for every message of a second. bh= (base64) holds no white space,
    so the canonical tag list is this + bh + "; b=" (see `DkimSigner.prepare`)."""
    raw = (
        f" v=1; a={algorithm}; c=relaxed/relaxed; d={domain};\r\n"
        f"\ts={selector}; t={when};\r\n{h};\r\n\tbh="
    ).encode("ascii")
    return raw, relaxed_header(b"dkim-signature", raw)[:-2]


@lru_cache(maxsize=64)
def _fold_list(prefix: str, items: tuple[str, ...], sep: str) -> str:
    """`prefix` + items joined by `sep`, folded (CRLF TAB) before an item that would pass
    76 characters on its line: FWS is allowed around h='s colons (RFC 6376 3.5)."""
    out, line = [], prefix
    for i, item in enumerate(items):
        piece = item if i == 0 else sep + item
        if i and len(line) + len(piece) > 76:
            out.append(line + sep.rstrip())
            line = "\t" + item
        else:
            line += piece
    out.append(line)
    return "\r\n".join(out)


@dataclass(frozen=True, slots=True)
class Unsigned:
    """A message's signatures before the private-key operations (`DkimSigner.prepare`): per
    key, its DKIM-Signature tag list up to the empty b=, and the canonical data it signs."""

    tag_lists: tuple[bytes, ...]
    data: tuple[bytes, ...]


class DkimSigner:
    """Signs messages for one domain with an RSA key and, optionally, an Ed25519 key."""

    def __init__(
        self, domain: str, keys: Sequence[DkimKey], clock: Callable[[], float] = time.time
    ) -> None:
        if not keys:
            raise ValueError("a signer needs a key")
        self.domain = domain
        self.keys = tuple(keys)
        self._clock = clock

    def signature_lines(self, head: bytes, body_hash: bytes, shared: bytes = b"") -> bytes:
        """The DKIM-Signature header lines (CRLF-ended, one per key, the RSA one on top) for a
        message whose header block is `head` + `shared` (CRLF lines, no blank line) and whose
        canonical body hashes to `body_hash`. `shared`: header lines many messages have in
        common (a digest template's), canonicalized once."""
        unsigned = self.prepare(head, body_hash, shared)
        return self.complete(unsigned, self.sign_all(unsigned))

    def prepare(self, head: bytes, body_hash: bytes, shared: bytes = b"") -> Unsigned:
        """`signature_lines` up to the private-key operations (arguments the same): what each
        key signs, so that they can run elsewhere (`dkim_offload`) and `complete` follows."""
        fields = _signed_fields(head)
        plan = _plan(tuple(name for name, _ in fields), shared)
        pool = [canonical for _, canonical in fields]
        pool += plan.shared
        data = b"".join([pool[i] for i in plan.order])
        when = int(self._clock())
        bh = base64.b64encode(body_hash)
        tag_lists = []
        signed = []
        for key in self.keys:
            raw, canonical = _tag_list_start(key.algorithm, self.domain, key.selector, when, plan.h)
            tag_lists.append(raw + bh + _B_FOLDED)
            signed.append(data + canonical + bh + _B_CANONICAL)
        return Unsigned(tuple(tag_lists), tuple(signed))

    def sign_all(self, unsigned: Unsigned) -> tuple[bytes, ...]:
        """The private-key operations of `unsigned`, one per key, here."""
        return tuple(key.sign(data) for key, data in zip(self.keys, unsigned.data, strict=True))

    def complete(self, unsigned: Unsigned, signatures: Sequence[bytes]) -> bytes:
        """The DKIM-Signature lines of `unsigned` with its keys' `signatures` (`sign_all`)."""
        lines = []
        for raw, signature in zip(unsigned.tag_lists, signatures, strict=True):
            b = base64.b64encode(signature).decode("ascii")
            folded = "\r\n\t".join(b[i : i + 72] for i in range(0, len(b), 72))
            lines.append(b"DKIM-Signature:" + raw + folded.encode("ascii") + b"\r\n")
        return b"".join(lines)  # the first key's signature on top

    def sign(self, message: bytes) -> bytes:
        """`message` (any line ends; not in wire form) with its signatures in front, CRLF line
        ends throughout: the bytes to send as they are."""
        lf = message.count(b"\n")
        if lf != message.count(b"\r\n") or message.count(b"\r") != lf:
            message = _LINE_ENDS.sub(b"\r\n", message)
        head, sep, body = message.partition(b"\r\n\r\n")
        if not sep:  # headers only
            head, body = message.rstrip(b"\r\n"), b""
        body_hash = hashlib.sha256(relaxed_body(body)).digest()
        return self.signature_lines(head + b"\r\n", body_hash) + message


def signer_for(settings: Settings) -> DkimSigner | None:
    """The signer DIGESTD_DKIM_* describe, or None when DKIM signing is off (no key file).
    Keys are read once per distinct file (and change of it: size and modification time)."""
    path = settings.dkim_key_file
    if path is None or not settings.dkim_selector:
        return None
    return _signer(
        settings.dkim_domain or from_domain(settings.from_address),
        settings.dkim_selector,
        _stamp(path),
        _stamp(settings.dkim_ed25519_key_file),
        settings.dkim_ed25519_selector or f"{settings.dkim_selector}-ed25519",
    )


def from_domain(address: str) -> str:
    """The domain of a From value (`Name <user@domain>`), lowercased."""
    from email.utils import parseaddr

    return parseaddr(address)[1].rpartition("@")[2].strip().lower().rstrip(".")


def _stamp(path: Path | None) -> tuple[str, float, int] | None:
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError as exc:
        raise DkimKeyError(f"{path}: cannot read ({exc.strerror})") from None
    return (str(path), st.st_mtime, st.st_size)


@lru_cache(maxsize=8)
def _signer(
    domain: str,
    selector: str,
    rsa_file: tuple[str, float, int],
    ed_file: tuple[str, float, int] | None,
    ed_selector: str,
) -> DkimSigner:
    main = load_private_key(Path(rsa_file[0]))
    if not isinstance(main, rsa.RSAPrivateKey):
        raise DkimKeyError(
            f"{rsa_file[0]}: DIGESTD_DKIM_KEY_FILE must be an RSA key (Gmail and Yahoo need RSA;"
            " an Ed25519 key goes in DIGESTD_DKIM_ED25519_KEY_FILE)"
        )
    keys = [DkimKey(selector, main)]
    if ed_file is not None:
        second = load_private_key(Path(ed_file[0]))
        if not isinstance(second, ed25519.Ed25519PrivateKey):
            raise DkimKeyError(f"{ed_file[0]}: DIGESTD_DKIM_ED25519_KEY_FILE is not an Ed25519 key")
        keys.append(DkimKey(ed_selector, second))
    return DkimSigner(domain, keys)
