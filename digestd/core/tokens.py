"""Signed links: bound to one subscriber and one purpose, expiring, revocable.

itsdangerous does the signing; a token carries (subscriber id, token_version)
and is salted with its purpose, so an unsubscribe token cannot confirm and a
bumped `Subscriber.token_version` revokes every link handed out before.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache
from hashlib import blake2s as _blake2s
from typing import cast

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode
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
    subscriber_id: int
    token_version: int


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


def make_token(secret_key: str, purpose: str, subscriber_id: int, token_version: int) -> str:
    """A URL-safe signed token for one subscriber and purpose."""
    return str(_serializer(secret_key, purpose).dumps([subscriber_id, token_version]))


def read_token(
    secret_key: str, purpose: str, token: str, now_ts: float | None = None
) -> TokenClaims:
    """Verify signature, purpose and age; the caller still compares token_version."""
    ser = _serializer(secret_key, purpose)
    try:
        if now_ts is None:
            payload = ser.loads(token, max_age=PURPOSES[purpose])
        else:
            payload, signed_at = ser.loads(token, return_timestamp=True)
            if now_ts - signed_at.timestamp() > PURPOSES[purpose]:
                raise TokenError("link expired")
    except SignatureExpired:
        raise TokenError("link expired") from None
    except BadSignature:
        raise TokenError("link is not valid") from None
    if (
        not isinstance(payload, list)
        or len(payload) != 2
        or not all(isinstance(x, int) for x in payload)
    ):
        raise TokenError("link is not valid")
    return TokenClaims(subscriber_id=payload[0], token_version=payload[1])


def links(
    base_url: str, secret_key: str, purposes: tuple[str, ...], subscriber_id: int, version: int
) -> list[str]:
    """`link` for several purposes of one subscriber (a digest carries unsubscribe and
    preferences): the payload is encoded once and only signed per purpose. Each token is
    what `make_token` gives for that purpose (same payload, salt and signer)."""
    payload = _serializer(secret_key, purposes[0]).dump_payload([subscriber_id, version])
    base = base_url.rstrip("/")
    return [
        f"{base}/{purpose}/{_signer(secret_key, purpose).sign(payload).decode()}"
        for purpose in purposes
    ]


def link(base_url: str, secret_key: str, purpose: str, subscriber_id: int, version: int) -> str:
    """The public URL of a signed link, e.g. https://host/unsubscribe/TOKEN."""
    token = make_token(secret_key, purpose, subscriber_id, version)
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
# - TOKEN is an ordinary signed token of purpose "vote" (subscriber id, token_version,
#   timestamp): the same key, expiry and revocation rules as every other link, signed once
#   per message and shared by all its vote links (one personalization slot).
# - MAC = keyed BLAKE2s(vote key, "TOKEN/entry_id/direction"), 64 bits as 16 hex digits:
#   it binds the paper and the direction to that token, hence to that subscriber, version
#   and signing time. BLAKE2's keyed mode is a MAC by design (RFC 7693 §2.9), one C call per
#   link (≈0.6 µs, a third of HMAC-SHA256); the vote key is derived once from the secret
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
    key = _vote_key(secret_key)
    prefix = token.encode("ascii") + b"/"
    out = []
    for entry_id in entry_ids:
        stem = prefix + str(entry_id).encode("ascii")
        out.append(_blake2s(stem + b"/up", key=key, digest_size=VOTE_MAC_BYTES).hexdigest())
        out.append(_blake2s(stem + b"/down", key=key, digest_size=VOTE_MAC_BYTES).hexdigest())
    return out


def vote_link(
    base_url: str, secret_key: str, subscriber_id: int, version: int, entry_id: int, direction: str
) -> str:
    """The full URL of one vote link (for pages and tests; digests fill it from slots)."""
    token = make_token(secret_key, "vote", subscriber_id, version)
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
    purpose, age); the caller still compares token_version. TokenError when anything fails."""
    if direction not in VOTE_DIRECTIONS or not token.isascii():
        raise TokenError("link is not valid")
    if not hmac.compare_digest(vote_mac(secret_key, token, entry_id, direction), mac):
        raise TokenError("link is not valid")
    return read_token(secret_key, "vote", token, now_ts)


def subscriber_link(base_url: str, secret_key: str, purpose: str, sub: Subscriber) -> str:
    """The signed public URL of `purpose` for this subscriber's current token version."""
    assert sub.id is not None
    return link(base_url, secret_key, purpose, sub.id, sub.token_version)


def subscriber_token(secret_key: str, purpose: str, sub: Subscriber) -> str:
    """Just the token part, for building form actions on our own pages."""
    assert sub.id is not None
    return make_token(secret_key, purpose, sub.id, sub.token_version)
