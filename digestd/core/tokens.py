"""Signed links: bound to one subscriber and one purpose, expiring, revocable.

itsdangerous does the signing; a token carries (subscriber id, link key) and is salted with
its purpose, so an unsubscribe token cannot confirm. The link key is a random value per
subscriber (`Subscriber.link_key`): a link is honoured only while it matches, so a new key
("sign me out of all links", an unsubscribe) withdraws every link handed out before, and a
link can never act on another person, even one given the same id (`bound_to`). Tokens from
before link keys carried (id, token_version); they are still read, and honoured only for
the same version and a subscriber created before the link was signed.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from hashlib import blake2s as _blake2s
from typing import Protocol, cast

from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode, int_to_bytes, want_bytes
from itsdangerous.serializer import Serializer

from digestd.core.models import Subscriber

PURPOSES = {
    # purpose -> max age in seconds
    "confirm": 3 * 24 * 3600,
    "unsubscribe": 365 * 24 * 3600,
    "preferences": 90 * 24 * 3600,
    # "View in browser": the digests of one subscriber (the period is in the path).
    "view": 90 * 24 * 3600,
    # "More / less like this" links (see `vote_link`): as long as the preferences link.
    "vote": 90 * 24 * 3600,
}
VOTE_DIRECTIONS = ("up", "down")
VOTE_MAC_BYTES = 8  # 64 bits, 16 hex digits


class TokenError(ValueError):
    """A token that is tampered, expired, for another purpose or revoked."""


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says: whose it is (id and link key), any extra numbers the
    purpose carries (a confirmation's sign-up request), and when it was signed."""

    subscriber_id: int
    link_key: str | None  # None: a token from before link keys (it has token_version)
    token_version: int | None = None
    extra: tuple[int, ...] = ()
    signed_at: float = 0.0


class LinkOwner(Protocol):
    """What `bound_to` compares: a Subscriber row."""

    link_key: str
    token_version: int
    created_at: datetime


class _Signer(TimestampSigner):
    """itsdangerous' timestamp signer, deriving its signing key once instead of per token
    (a hash of salt and secret, the same every time). Verification with an explicit key
    (`unsign`) is unchanged."""

    _key: bytes | None = None

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        if secret_key is not None:
            return super().derive_key(secret_key)
        if self._key is None:
            self._key = super().derive_key()
        return self._key


class _UncompressedSerializer(URLSafeTimedSerializer):
    """itsdangerous' URL-safe timed serializer, minus the zlib attempt when dumping.

    It tries `zlib.compress` on every payload and keeps the result only when shorter. A
    [subscriber id, version] payload is a few digits and practically never is, and each
    attempt cost 30-70 µs (zlib sets up its state per call): more than signing a digest's
    four links. Dumping writes what itsdangerous writes for an uncompressed payload;
    loading (the mixin's) still reads both forms, so every link ever mailed keeps working.
    """

    def dump_payload(self, obj: object) -> bytes:
        return base64_encode(Serializer.dump_payload(self, obj))


@lru_cache(maxsize=64)
def _serializer(secret_key: str, purpose: str) -> URLSafeTimedSerializer:
    # Cached: building a serializer (key derivation setup) costs about as much as signing,
    # and a send pass signs two links per message with the same (secret, purpose).
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    # digest_method: the same HMAC-SHA1 as itsdangerous' default (`_lazy_sha1`, a Python
    # wrapper), but passed as hashlib's own constructor so `hmac` takes OpenSSL's fast path
    # instead of its pure-Python one: 31 → 28 µs for a digest's four links, same tokens.
    return _UncompressedSerializer(
        secret_key,
        salt=f"digestd.{purpose}",
        signer=_Signer,
        signer_kwargs={"digest_method": hashlib.sha1},
    )


@lru_cache(maxsize=64)
def _signer(secret_key: str, purpose: str) -> TimestampSigner:
    # make_signer builds the serializer's `signer` class, here a TimestampSigner (_Signer).
    return cast(TimestampSigner, _serializer(secret_key, purpose).make_signer())


def make_token(
    secret_key: str, purpose: str, subscriber_id: int, link_key: str, *extra: int
) -> str:
    """A URL-safe signed token for one subscriber (bound to its link key) and purpose."""
    return str(_serializer(secret_key, purpose).dumps([subscriber_id, link_key, *extra]))


def read_token(
    secret_key: str, purpose: str, token: str, now_ts: float | None = None
) -> TokenClaims:
    """Verify signature, purpose and age; the caller still checks `bound_to` its subscriber."""
    ser = _serializer(secret_key, purpose)
    try:
        payload, signed = ser.loads(token, return_timestamp=True)
    except BadSignature:
        raise TokenError("link is not valid") from None
    signed_at = signed.timestamp()
    now = time.time() if now_ts is None else now_ts
    if now - signed_at > PURPOSES[purpose]:
        raise TokenError("link expired")
    if not isinstance(payload, list) or len(payload) < 2 or not isinstance(payload[0], int):
        raise TokenError("link is not valid")
    sub_id, key, extra = payload[0], payload[1], payload[2:]
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in extra):
        raise TokenError("link is not valid")
    if isinstance(key, str):
        return TokenClaims(sub_id, key, None, tuple(extra), signed_at)
    if isinstance(key, int) and not isinstance(key, bool) and not extra:
        return TokenClaims(sub_id, None, key, (), signed_at)  # from before link keys
    raise TokenError("link is not valid")


def bound_to(claims: TokenClaims, sub: LinkOwner) -> bool:
    """Whether a verified token belongs to this subscriber as it is now: its link key (or,
    for a token from before link keys, its token version, and a subscriber that already
    existed when the link was signed: an id given to someone else later never matches)."""
    if claims.link_key is not None:
        return hmac.compare_digest(claims.link_key.encode(), (sub.link_key or "").encode())
    return (
        claims.token_version == sub.token_version
        and claims.signed_at >= sub.created_at.timestamp() // 1
    )


@lru_cache(maxsize=64)
def _keyed_mac(secret_key: str, purpose: str) -> hmac.HMAC:
    # The HMAC of `_signer(secret_key, purpose)` with its key already set up: `links` signs
    # with a copy of it (the inner and outer key blocks are hashed once, not per token).
    signer = _signer(secret_key, purpose)
    return hmac.new(signer.derive_key(), digestmod=signer.digest_method)


def links(
    base_url: str, secret_key: str, purposes: tuple[str, ...], subscriber_id: int, link_key: str
) -> list[str]:
    """`link` for several purposes of one subscriber (a digest carries four): the payload and
    the timestamp are encoded once and only the HMAC is computed per purpose. Each token is
    byte for byte what `make_token` gives for that purpose in the same second (itsdangerous'
    `TimestampSigner.sign`: payload, ".", timestamp, ".", HMAC-SHA1 with the salted key,
    in unpadded URL-safe base64; tests compare)."""
    payload = _serializer(secret_key, purposes[0]).dump_payload([subscriber_id, link_key])
    signer = _signer(secret_key, purposes[0])
    sep = want_bytes(signer.sep)
    value = payload + sep + base64_encode(int_to_bytes(signer.get_timestamp()))
    base = base_url.rstrip("/")
    out = []
    for purpose in purposes:
        mac = _keyed_mac(secret_key, purpose).copy()
        mac.update(value)
        out.append(f"{base}/{purpose}/{(value + sep + base64_encode(mac.digest())).decode()}")
    return out


def link(
    base_url: str, secret_key: str, purpose: str, subscriber_id: int, link_key: str, *extra: int
) -> str:
    """The public URL of a signed link, e.g. https://host/unsubscribe/TOKEN."""
    token = make_token(secret_key, purpose, subscriber_id, link_key, *extra)
    return f"{base_url.rstrip('/')}/{purpose}/{token}"


def view_url(view_link: str, period: str) -> str:
    """The "View in browser" URL of one digest: the subscriber's signed `view` link (from
    `links`/`link`) followed by the digest's period, e.g. https://host/view/TOKEN/2026-11-26.
    The token proves the subscriber; the page shows only that subscriber's digests."""
    return f"{view_link}/{period}"


# ---- vote links ----------------------------------------------------------------------------
#
# A digest carries two vote links per paper ("more / less like this"), so a 10-paper digest
# has 20 links per subscriber; signing each with itsdangerous (≈15-20 µs: JSON, base64,
# key handling, timestamp) would cost more than the rest of personalizing a message. So a
# vote link is two parts:
#
#   {base}/vote/{TOKEN}/{entry_id}/{up|down}/{MAC}
#
# - TOKEN is an ordinary signed token of purpose "vote" (subscriber id, link key,
#   timestamp): the same key, expiry and revocation rules as every other link, signed once
#   per message and shared by all its vote links (one personalization slot).
# - MAC = keyed BLAKE2s(vote key, "TOKEN/entry_id/direction"), 64 bits as 16 hex digits:
#   it binds the paper and the direction to that token, hence to that subscriber, version
#   and signing time. BLAKE2's keyed mode is a MAC by design (RFC 7693 §2.9), a few C
#   calls per link (`vote_macs` continues one state that has hashed the key and the token,
#   ≈0.7 µs a link); the vote key is derived once from the secret
#   key with its own label, so it is no other link's key. 64 bits cannot be guessed
#   online (and the web's POSTs are rate-limited).
#
# Changing any part (another paper, the other direction, another subscriber's token)
# breaks the MAC; an expired or revoked TOKEN is refused like any other link.


@lru_cache(maxsize=8)
def _vote_key(secret_key: str) -> bytes:
    # 32 bytes, BLAKE2s' largest key; labelled, so it is no other link's key.
    return hmac.digest(secret_key.encode("utf-8"), b"digestd.vote-link.v1", "sha256")


def vote_mac(secret_key: str, token: str, entry_id: int, direction: str) -> str:
    """The MAC binding one paper and direction to a subscriber's vote token."""
    message = f"{token}/{entry_id}/{direction}".encode("ascii")
    return _blake2s(message, key=_vote_key(secret_key), digest_size=VOTE_MAC_BYTES).hexdigest()


def vote_macs(secret_key: str, token: str, entry_ids: tuple[int, ...]) -> list[str]:
    """`vote_mac` for every (entry, direction) of a digest, in order: up, down per entry.
    The key and the token's bytes are prepared once (this runs per message)."""
    # Keyed BLAKE2s over "TOKEN/entry_id/direction", as `vote_mac`: the key block and the
    # token are hashed once, and each MAC continues a copy of that state.
    prefix = _keyed_blake2s(secret_key).copy()
    prefix.update(token.encode("ascii") + b"/")
    out = []
    for entry_id in entry_ids:
        up = prefix.copy()
        up.update(str(entry_id).encode("ascii"))
        down = up.copy()
        up.update(b"/up")
        down.update(b"/down")
        out.append(up.hexdigest())
        out.append(down.hexdigest())
    return out


@lru_cache(maxsize=8)
def _keyed_blake2s(secret_key: str) -> hashlib.blake2s:
    # `vote_mac`'s BLAKE2s with its key block already hashed (`vote_macs` copies it).
    return _blake2s(key=_vote_key(secret_key), digest_size=VOTE_MAC_BYTES)


def vote_link(
    base_url: str, secret_key: str, subscriber_id: int, link_key: str, entry_id: int, direction: str
) -> str:
    """The full URL of one vote link (for pages and tests; digests fill it from slots)."""
    token = make_token(secret_key, "vote", subscriber_id, link_key)
    mac = vote_mac(secret_key, token, entry_id, direction)
    return f"{base_url.rstrip('/')}/vote/{token}/{entry_id}/{direction}/{mac}"


def read_vote(
    secret_key: str,
    token: str,
    entry_id: int,
    direction: str,
    mac: str,
    now_ts: float | None = None,
) -> TokenClaims:
    """Verify a vote link: its MAC for this paper and direction, then the token (signature,
    purpose, age); the caller still checks `bound_to`. TokenError when anything fails."""
    if direction not in VOTE_DIRECTIONS or not token.isascii():
        raise TokenError("link is not valid")
    if not hmac.compare_digest(vote_mac(secret_key, token, entry_id, direction), mac):
        raise TokenError("link is not valid")
    return read_token(secret_key, "vote", token, now_ts)


def subscriber_link(
    base_url: str, secret_key: str, purpose: str, sub: Subscriber, *extra: int
) -> str:
    """The signed public URL of `purpose` for this subscriber's current link key."""
    assert sub.id is not None
    return link(base_url, secret_key, purpose, sub.id, sub.link_key, *extra)


def subscriber_token(secret_key: str, purpose: str, sub: Subscriber) -> str:
    """Just the token part, for building form actions on our own pages."""
    assert sub.id is not None
    return make_token(secret_key, purpose, sub.id, sub.link_key)
