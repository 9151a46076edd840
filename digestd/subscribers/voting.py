"""Use cases of a vote link ("more / less like this"): show what it stands for, record the
vote, take it back. Each owns its transaction; the link is checked on every use like every
other signed link (its MAC for this paper and direction, then its token and link key)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from digestd.core.context import AppContext
from digestd.core.models import Entry, Subscriber
from digestd.subscribers import links, store, vote_store
from digestd.subscribers.links import LinkError


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
    session: Session, ctx: AppContext, token: str, entry_id: int, direction: str, mac: str,
    now: datetime,
) -> tuple[Subscriber, Entry]:  # fmt: skip
    sub = links.resolve_vote(session, ctx.secret_key, token, entry_id, direction, mac, now)
    entry = vote_store.entry(session, entry_id)
    if entry is None:
        raise LinkError(410, "This paper is no longer in the digest's collection.")
    return sub, entry


def _page(
    session: Session, sub: Subscriber, entry: Entry, direction: str, changed: bool
) -> VotePage:
    assert sub.id is not None and entry.id is not None
    value = vote_store.current(session, sub.id, entry.id)
    return VotePage(
        email=sub.email,
        entry_id=entry.id,
        title=" ".join((entry.title or "(untitled)").split()),
        url=entry.url or "",
        direction=direction,
        current=None if value is None else vote_store.direction_name(value),
        changed=changed,
    )


def show(ctx: AppContext, token: str, entry_id: int, direction: str, mac: str) -> VotePage:
    """The paper and vote a link stands for; changes nothing (mail scanners follow links)."""
    with store.transaction(ctx) as session:
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
    with store.transaction(ctx) as session:
        sub, entry = _resolve(session, ctx, token, entry_id, direction, mac, now)
        assert sub.id is not None and entry.id is not None
        value = vote_store.DIRECTIONS[direction]
        changed = vote_store.cast(session, sub.id, entry.id, value, now=now)
        return _page(session, sub, entry, direction, changed)


def undo(ctx: AppContext, token: str, entry_id: int, direction: str, mac: str) -> VotePage:
    """Take back the subscriber's vote on this paper (whichever way it went)."""
    now = ctx.now()
    with store.transaction(ctx) as session:
        sub, entry = _resolve(session, ctx, token, entry_id, direction, mac, now)
        assert sub.id is not None and entry.id is not None
        changed = vote_store.undo(session, sub.id, entry.id)
        return _page(session, sub, entry, direction, changed)
