"""Signed links as the web sees them: resolve a token to its subscriber (minting them is
`tokens.subscriber_link`)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from digestd.core import tokens
from digestd.core.models import Subscriber

MAX_TOKEN_LENGTH = 512


class LinkError(Exception):
    """A link that cannot be used; `status` is the HTTP status, the message one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def resolve(
    session: Session, secret_key: str, purpose: str, token: str, now: datetime
) -> Subscriber:
    """The subscriber a token was issued to, or LinkError (tampered, expired, revoked, gone)."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise LinkError(400, "This link is not valid. Please use the link from your latest email.")
    try:
        claims = tokens.read_token(secret_key, purpose, token, now_ts=now.timestamp())
    except tokens.TokenError as exc:
        if "expired" in str(exc):
            raise LinkError(
                410, "This link has expired. Please use the link from a newer email."
            ) from None
        raise LinkError(
            400, "This link is not valid. Please use the link from your latest email."
        ) from None
    sub = session.get(Subscriber, claims.subscriber_id)
    if sub is None:
        raise LinkError(410, "There is no subscription for this link any more.")
    if sub.token_version != claims.token_version:
        raise LinkError(410, "This link was withdrawn. Please use the link from a newer email.")
    return sub
