"""What the vote pages do to the database: one transaction per request, owned here.

A vote link (tokens.vote_link) names a subscriber (through its signed token), a paper and
a direction; it is checked here on every use, the same way as every other signed link.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from digestd.core import tokens
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Entry, Subscriber
from digestd.subscribers import votes
from digestd.web.links import MAX_TOKEN_LENGTH, LinkError

INVALID = "This link is not valid. Please use the link from your latest email."


@dataclass(frozen=True)
class VotePage:
    """A vote link as its page shows it."""

    email: str
    entry_id: int
    title: str
    url: str
    direction: str  # "up" or "down": what the link asks for
    current: str | None  # the subscriber's vote on this paper now ("up", "down", None)
    changed: bool = False


def _resolve(
    session: Session,
    ctx: AppContext,
    token: str,
    entry_id: int,
    direction: str,
    mac: str,
    now: datetime,
) -> tuple[Subscriber, Entry]:
    if not token or len(token) > MAX_TOKEN_LENGTH or len(mac) > 64:
        raise LinkError(400, INVALID)
    try:
        claims = tokens.read_vote(
            ctx.secret_key, token, entry_id, direction, mac, now_ts=now.timestamp()
        )
    except tokens.TokenError as exc:
        if "expired" in str(exc):
            raise LinkError(410, "This link has expired. Please use a newer email.") from None
        raise LinkError(400, INVALID) from None
    sub = session.get(Subscriber, claims.subscriber_id)
    if sub is None:
        raise LinkError(410, "There is no subscription for this link any more.")
    if sub.token_version != claims.token_version:
        raise LinkError(410, "This link was withdrawn. Please use the link from a newer email.")
    entry = session.get(Entry, entry_id)
    if entry is None:
        raise LinkError(410, "This paper is no longer in the digest's collection.")
    return sub, entry


def _page(
    session: Session, sub: Subscriber, entry: Entry, direction: str, changed: bool
) -> VotePage:
    assert sub.id is not None and entry.id is not None
    value = votes.current(session, sub.id, entry.id)
    return VotePage(
        email=sub.email,
        entry_id=entry.id,
        title=" ".join((entry.title or "(untitled)").split()),
        url=entry.url or "",
        direction=direction,
        current=None if value is None else votes.direction_name(value),
        changed=changed,
    )


def show(ctx: AppContext, token: str, entry_id: int, direction: str, mac: str) -> VotePage:
    """The paper and vote a link stands for; changes nothing (mail scanners follow links)."""
    with session_scope(ctx.engine) as session:
        sub, entry = _resolve(session, ctx, token, entry_id, direction, mac, ctx.now())
        return _page(session, sub, entry, direction, False)


def cast(ctx: AppContext, token: str, entry_id: int, direction: str, mac: str) -> VotePage:
    """Record the link's vote; the same vote again changes nothing."""
    for attempt in range(2):
        try:
            return _cast(ctx, token, entry_id, direction, mac)
        except IntegrityError:
            # Two clicks raced on the unique (subscriber, entry) row: the second attempt
            # finds the row the other one wrote, and changes nothing.
            if attempt == 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _cast(ctx: AppContext, token: str, entry_id: int, direction: str, mac: str) -> VotePage:
    now = ctx.now()
    with session_scope(ctx.engine) as session:
        sub, entry = _resolve(session, ctx, token, entry_id, direction, mac, now)
        assert sub.id is not None and entry.id is not None
        changed = votes.cast(session, sub.id, entry.id, votes.DIRECTIONS[direction], now=now)
        return _page(session, sub, entry, direction, changed)


def undo(ctx: AppContext, token: str, entry_id: int, direction: str, mac: str) -> VotePage:
    """Take back the subscriber's vote on this paper (whichever way it went)."""
    now = ctx.now()
    with session_scope(ctx.engine) as session:
        sub, entry = _resolve(session, ctx, token, entry_id, direction, mac, now)
        assert sub.id is not None and entry.id is not None
        changed = votes.undo(session, sub.id, entry.id)
        return _page(session, sub, entry, direction, changed)


def listing(ctx: AppContext, subscriber_id: int) -> list[votes.VoteView]:
    """A subscriber's votes and liked papers, for the preference centre."""
    with session_scope(ctx.engine) as session:
        return votes.listing(session, subscriber_id)


def clear(ctx: AppContext, subscriber_id: int) -> int:
    """Delete every vote of a subscriber (their liked papers stay: they are a preference)."""
    with session_scope(ctx.engine) as session:
        return votes.clear(session, subscriber_id)


def set_liked(ctx: AppContext, subscriber_id: int, refs: list[str]) -> bool:
    """Make the subscriber's "papers I like" exactly `refs`; UnknownPaper (one line) when a
    reference is not in the database, ValueError when there are too many."""
    with session_scope(ctx.engine) as session:
        entries = votes.find_papers(session, refs)
        return votes.set_interests(session, subscriber_id, entries, now=ctx.now())
