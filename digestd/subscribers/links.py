"""Signed links as the subscriber side honours them: which subscriber a token belongs to,
or why it cannot be used (minting them is `tokens.subscriber_link`).

A link acts only on the subscriber it was made for: its signature, purpose and age are
checked, then its link key against the subscriber's current one (`tokens.bound_to`). A
forgotten subscriber's links, revoked links and links from before an unsubscribe answer 410
on every route, whoever holds the id now (ids are never given out twice either).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from digestd.core import tokens
from digestd.core.models import Subscriber
from digestd.subscribers import library_store, store, vote_store
from digestd.subscribers.vote_store import VoteView

MAX_TOKEN_LENGTH = 512
INVALID = "This link is not valid. Please use the link from your latest email."
EXPIRED = "This link has expired. Please use the link from a newer email."
GONE = "There is no subscription for this link any more."
WITHDRAWN = "This link was withdrawn. Please use the link from a newer email."


class LinkError(Exception):
    """A link that cannot be used; `status` is the HTTP status, the message one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _owner(session: Session, claims: tokens.TokenClaims) -> Subscriber:
    sub = store.get(session, claims.subscriber_id)
    if sub is None:
        raise LinkError(410, GONE)
    if not tokens.bound_to(claims, sub):
        raise LinkError(410, WITHDRAWN)
    return sub


def _read(read: Callable[[], tokens.TokenClaims]) -> tokens.TokenClaims:
    try:
        return read()
    except tokens.TokenError as exc:
        if "expired" in str(exc):
            raise LinkError(410, EXPIRED) from None
        raise LinkError(400, INVALID) from None


def claims_of(secret_key: str, purpose: str, token: str, now: datetime) -> tokens.TokenClaims:
    """A token's verified claims (signature, purpose, age), or LinkError."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise LinkError(400, INVALID)
    return _read(lambda: tokens.read_token(secret_key, purpose, token, now_ts=now.timestamp()))


def resolve(
    session: Session, secret_key: str, purpose: str, token: str, now: datetime
) -> Subscriber:
    """The subscriber a token was issued to, or LinkError (tampered, expired, withdrawn, gone)."""
    return _owner(session, claims_of(secret_key, purpose, token, now))


def resolve_with_claims(
    session: Session, secret_key: str, purpose: str, token: str, now: datetime
) -> tuple[Subscriber, tokens.TokenClaims]:
    """`resolve`, with the token's claims (a confirmation carries its sign-up request)."""
    claims = claims_of(secret_key, purpose, token, now)
    return _owner(session, claims), claims


def resolve_vote(
    session: Session,
    secret_key: str,
    token: str,
    entry_id: int,
    direction: str,
    mac: str,
    now: datetime,
) -> Subscriber:
    """The subscriber a vote link was issued to (its MAC for this paper and direction, then
    its token), or LinkError."""
    if not token or len(token) > MAX_TOKEN_LENGTH or len(mac) > 64:
        raise LinkError(400, INVALID)
    claims = _read(
        lambda: tokens.read_vote(
            secret_key, token, entry_id, direction, mac, now_ts=now.timestamp()
        )
    )
    return _owner(session, claims)


@dataclass(frozen=True)
class LinkPage:
    """A subscriber as a page behind a link shows it, with fresh tokens for the page's own
    forms, their votes and liked papers (newest first) and the size of their library."""

    sub: Subscriber
    preferences_token: str
    unsubscribe_token: str
    changed: bool = False
    votes: tuple[VoteView, ...] = ()
    library_papers: int = 0  # papers of the reader's imported library


def page_of(session: Session, secret_key: str, sub: Subscriber, changed: bool = False) -> LinkPage:
    """The page data of a subscriber, read in the use case's own transaction."""
    assert sub.id is not None
    return LinkPage(
        sub=sub,
        preferences_token=tokens.subscriber_token(secret_key, "preferences", sub),
        unsubscribe_token=tokens.subscriber_token(secret_key, "unsubscribe", sub),
        changed=changed,
        votes=tuple(vote_store.listing(session, sub.id)),
        library_papers=library_store.count(session, sub.id),
    )
