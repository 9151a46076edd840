"""Signed links: bound to one subscriber and one purpose, expiring, revocable.

itsdangerous does the signing; a token carries (subscriber id, token_version)
and is salted with its purpose, so an unsubscribe token cannot confirm and a
bumped `Subscriber.token_version` revokes every link handed out before.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import cast

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

PURPOSES = {
    # purpose -> max age in seconds
    "confirm": 3 * 24 * 3600,
    "unsubscribe": 365 * 24 * 3600,
    "preferences": 90 * 24 * 3600,
    # "View in browser": the digests of one subscriber (the period is in the path).
    "view": 90 * 24 * 3600,
}


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


@lru_cache(maxsize=64)
def _serializer(secret_key: str, purpose: str) -> URLSafeTimedSerializer:
    # Cached: building a serializer (key derivation setup) costs about as much as signing,
    # and a send pass signs two links per message with the same (secret, purpose).
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    return URLSafeTimedSerializer(secret_key, salt=f"digestd.{purpose}", signer=_Signer)


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
