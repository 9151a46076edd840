"""The addresses digestd receives mail at, and the signed tokens they carry.

With DIGESTD_BOUNCE_ADDRESS=bounces@bounce.example.org:
- `bounces+d<id>-<sig>@bounce.example.org`: the envelope sender (VERP) of delivery <id>;
- `bounces+u<id>-<sig>@bounce.example.org`: the List-Unsubscribe mailto: of subscriber <id>;
- `bounces+request@bounce.example.org`: commands (List-Subscribe, List-Help);
- `bounces@bounce.example.org` itself: anything else that comes back (ESP forwards, FBLs).

Why the tokens are hand-made HMACs rather than itsdangerous: a local part must stay within
64 characters and survive MTAs that lowercase addresses (RFC 5321 says they must not, some
do), and itsdangerous' signatures are mixed-case base64 of ≥ 27 characters plus a payload.
Here: the id in base 36 and 80 bits of HMAC-SHA256 in lowercase base 32 (16 characters).
The subscriber token signs the subscriber's link key too (tokens.py), so a new link key
(revoking links, an unsubscribe) withdraws the mailto: address as well, and it can never act
on anyone but the subscriber it was made for. Addresses made before link keys signed the
`token_version` instead; they are still honoured while that version is current.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from email.utils import getaddresses

from digestd.core.config import Settings

REQUEST = "request"
_SIG_LEN = 16
_TOKEN = re.compile(r"^([du])([0-9a-z]{1,13})-([a-z2-7]{16})$")


@dataclass(frozen=True)
class OurAddress:
    """What one of our addresses names: `role` is verp, unsubscribe, request or bounce."""

    role: str
    ident: int | None = None  # delivery id (verp) or subscriber id (unsubscribe)
    signature: str = ""  # to check with `verify_*`; empty for request/bounce
    tampered: bool = False  # a `+token` that does not even parse


def _split(address: str) -> tuple[str, str]:
    local, _, domain = address.strip().strip("<>").rpartition("@")
    return local, domain.lower()


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if number == 0:
            return out


def _sign(secret_key: str, purpose: str, *parts: int | str) -> str:
    message = ".".join([purpose, *map(str, parts)]).encode()
    digest = hmac.new(secret_key.encode(), b"digestd.mailto." + message, hashlib.sha256).digest()
    return base64.b32encode(digest[:10]).decode().lower()


def _address(settings: Settings, tag: str) -> str:
    assert settings.bounce_address, "DIGESTD_BOUNCE_ADDRESS is not set"
    local, domain = _split(settings.bounce_address)
    return f"{local}+{tag}@{domain}"


def verp_address(settings: Settings, secret_key: str, delivery_id: int) -> str:
    """The envelope sender (MAIL FROM) of one delivery: its bounce comes back naming it."""
    return _address(settings, f"d{_base36(delivery_id)}-{_sign(secret_key, 'd', delivery_id)}")


def unsubscribe_address(
    settings: Settings, secret_key: str, subscriber_id: int, link_key: str
) -> str:
    """The List-Unsubscribe mailto: address of one subscriber (signed, bound to its link key)."""
    sig = _sign(secret_key, "u", subscriber_id, link_key)
    return _address(settings, f"u{_base36(subscriber_id)}-{sig}")


def request_address(settings: Settings) -> str:
    """Where commands go (subscribe, unsubscribe, help): List-Subscribe and List-Help."""
    return _address(settings, REQUEST)


def is_ours(settings: Settings, address: str) -> bool:
    """Whether mail to `address` is for us (the SMTP listener refuses every other recipient)."""
    return read_address(settings, address) is not None


def read_address(settings: Settings, address: str) -> OurAddress | None:
    """What one of our addresses names, or None when it is not ours at all."""
    if not settings.bounce_address or not address or len(address) > 320:
        return None
    base_local, base_domain = _split(settings.bounce_address)
    local, domain = _split(address)
    if domain != base_domain:
        return None
    local = local.lower()  # our tokens are lowercase: a lowercasing MTA changes nothing
    if local == base_local:
        return OurAddress("bounce")
    prefix = base_local + "+"
    if not local.startswith(prefix):
        return None
    tag = local[len(prefix) :]
    if tag == REQUEST:
        return OurAddress("request")
    match = _TOKEN.match(tag)
    if match is None:
        return OurAddress("bounce", tampered=True)
    kind, ident, sig = match.groups()
    return OurAddress("verp" if kind == "d" else "unsubscribe", ident=int(ident, 36), signature=sig)


def verify_delivery(secret_key: str, ours: OurAddress) -> bool:
    """Whether a VERP address was signed by us for that delivery."""
    if ours.role != "verp" or ours.ident is None:
        return False
    return hmac.compare_digest(ours.signature, _sign(secret_key, "d", ours.ident))


def verify_subscriber(
    secret_key: str, ours: OurAddress, link_key: str, token_version: int | None = None
) -> bool:
    """Whether an unsubscribe address was signed by us for that subscriber's current link
    key (or, made before link keys, its current `token_version`)."""
    if ours.role != "unsubscribe" or ours.ident is None:
        return False
    if hmac.compare_digest(ours.signature, _sign(secret_key, "u", ours.ident, link_key)):
        return True
    legacy = token_version is not None and _sign(secret_key, "u", ours.ident, token_version)
    return bool(legacy) and hmac.compare_digest(ours.signature, str(legacy))


def addresses_in(values: list[str]) -> list[str]:
    """The bare addresses in header values or envelope recipients (bad ones skipped)."""
    out: list[str] = []
    for _, addr in getaddresses(values):
        addr = addr.strip()
        if "@" in addr and addr not in out:
            out.append(addr)
    return out


# ---- what sending puts in each digest ---------------------------------------------------


def envelope_sender(settings: Settings, secret_key: str, delivery_id: int, default: str) -> str:
    """MAIL FROM for one delivery: its VERP address, or `default` when no bounce address."""
    if not settings.bounce_address:
        return default
    return verp_address(settings, secret_key, delivery_id)


def unsubscribe_mailto(
    settings: Settings, secret_key: str, subscriber_id: int, link_key: str
) -> str:
    """The `mailto:` of List-Unsubscribe, or '' when nothing reads it (no bounce address)."""
    if not settings.bounce_address:
        return ""
    address = unsubscribe_address(settings, secret_key, subscriber_id, link_key)
    return f"mailto:{address}?subject=unsubscribe"


def list_headers(settings: Settings) -> dict[str, str]:
    """List-Subscribe and List-Help (RFC 2369) pointing at the request address, if any."""
    if not settings.bounce_address:
        return {}
    request = request_address(settings)
    return {
        "List-Subscribe": f"<mailto:{request}?subject=subscribe>, <{settings.base_url}/>",
        "List-Help": f"<mailto:{request}?subject=help>",
    }
