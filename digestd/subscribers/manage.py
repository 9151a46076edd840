"""Use cases of a subscription that exists: preferences and liked papers, pausing, leaving,
lifting a suppression, withdrawing links, forgetting. The CLI (by address) and the pages
behind signed links (by token) call the same functions.

Each function owns its transaction (`session_scope`): the change and its audit event land
together or not at all, and an entry point never holds a transaction of its own around
them. The rules are in `lifecycle`; this module finds the subscriber, calls them, saves.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlmodel import Session

from digestd.core import tokens
from digestd.core.context import AppContext
from digestd.core.models import Subscriber
from digestd.core.statuses import MOVES, Move, StoppedBy, SubscriberStatus
from digestd.delivery import deliveries
from digestd.ranking import authors
from digestd.subscribers import library_store, lifecycle, links, store, vote_store
from digestd.subscribers.lifecycle import Change
from digestd.subscribers.links import LinkError, LinkPage
from digestd.subscribers.preferences import (
    PREFERENCE_FIELDS,
    InvalidInput,
    Preferences,
    normalize_email,
    parse_authors,
    preference_diff,
)

S = SubscriberStatus


@dataclass(frozen=True)
class ByEmail:
    """A subscriber named by an admin (the CLI)."""

    email: str


@dataclass(frozen=True)
class ByLink:
    """A subscriber named by a signed link of this purpose (the pages)."""

    purpose: str
    token: str


Who = ByEmail | ByLink


class NotFound(InvalidInput):
    """No subscriber has this address (one line)."""


def find(session: Session, ctx: AppContext, who: Who, now: datetime) -> Subscriber:
    """The subscriber an admin named or a link belongs to, in the use case's transaction
    (NotFound, or LinkError for a link that cannot be used)."""
    if isinstance(who, ByLink):
        return links.resolve(session, ctx.secret_key, who.purpose, who.token, now)
    sub = store.by_email(session, normalize_email(who.email))
    if sub is None:
        raise NotFound(f"no subscriber {who.email.strip()!r}")
    return sub


def actor_of(ctx: AppContext, who: Who) -> str:
    """Who the audit event names: "web" for a link's person, else the context's actor."""
    return "web" if isinstance(who, ByLink) else ctx.actor


def show_link(ctx: AppContext, purpose: str, token: str) -> LinkPage:
    """The subscriber behind a link, without changing anything."""
    with store.transaction(ctx) as session:
        sub = links.resolve(session, ctx.secret_key, purpose, token, ctx.now())
        return links.page_of(session, ctx.secret_key, sub)


# ---- preferences and liked papers -----------------------------------------------------------


@dataclass(frozen=True)
class Updated:
    """What an update changed: preferences {field: [old, new]}, liked papers added and
    removed (and the liked papers now, when they were touched), and the page after it."""

    email: str
    diff: dict[str, list[Any]]
    liked_added: int = 0
    liked_removed: int = 0
    liked: tuple[str, ...] | None = None
    page: LinkPage | None = None

    @property
    def changed(self) -> bool:
        return bool(self.diff or self.liked_added or self.liked_removed)


def update(
    ctx: AppContext,
    who: Who,
    changes: dict[str, Any],
    *,
    like: list[str] | None = None,
    unlike: list[str] | None = None,
    liked: list[str] | None = None,
) -> Updated:
    """Change preferences (only the fields given) and liked papers (`like`/`unlike` add and
    remove; `liked` sets them exactly, as the preferences page does), in one transaction.
    InvalidInput, or votes.UnknownPaper / ValueError (a ValueError too) for a bad paper."""
    unknown = sorted(set(changes) - set(PREFERENCE_FIELDS))
    if unknown:
        raise InvalidInput(f"unknown preference {unknown[0]!r}")
    now = ctx.now()
    with store.transaction(ctx) as session:
        sub = find(session, ctx, who, now)
        assert sub.id is not None
        wanted = replace(Preferences.of(sub), **changes).validated()
        diff = preference_diff(sub, wanted)
        for name, (_, new) in diff.items():
            setattr(sub, name, new)
        added = removed = 0
        if like:
            added = vote_store.like(session, sub.id, vote_store.find_papers(session, like), now=now)
        if unlike:
            removed = vote_store.unlike(session, sub.id, vote_store.find_papers(session, unlike))
        if liked is not None:
            entries = vote_store.find_papers(session, liked)
            added, removed = vote_store.set_interests(session, sub.id, entries, now=now)
        change = Change(lifecycle.UPDATED, {"changes": diff}) if diff else None
        store.save(session, sub, [change], actor=actor_of(ctx, who), now=now)
        touched = like is not None or unlike is not None or liked is not None
        now_liked = (
            tuple(v.paper_id for v in vote_store.interests(session, sub.id)) if touched else None
        )
        page = links.page_of(session, ctx.secret_key, sub) if isinstance(who, ByLink) else None
        return Updated(sub.email, diff, added, removed, now_liked, page)


def follow_authors(ctx: AppContext, who: Who, names: list[str], *, follow: bool = True) -> Updated:
    """Add authors to those the subscriber follows (and take them off the muted ones), or
    with `follow=False` stop following them: the mail commands and a library import call
    this, the CLI and the preference page set the whole list with `update`. InvalidInput
    for a bad name; adding one already followed changes nothing."""
    wanted = parse_authors(names)
    now = ctx.now()
    with store.transaction(ctx) as session:
        sub = find(session, ctx, who, now)
        if follow:
            follows = [*sub.follows, *wanted]
            muted = authors.without(sub.muted_authors, wanted)
        else:
            follows = authors.without(sub.follows, wanted)
            muted = list(sub.muted_authors)
        prefs = replace(Preferences.of(sub), follows=follows, muted_authors=muted).validated()
        diff = preference_diff(sub, prefs)
        for name, (_, new) in diff.items():
            setattr(sub, name, new)
        change = Change(lifecycle.UPDATED, {"changes": diff}) if diff else None
        store.save(session, sub, [change], actor=actor_of(ctx, who), now=now)
        page = links.page_of(session, ctx.secret_key, sub) if isinstance(who, ByLink) else None
        return Updated(sub.email, diff, page=page)


def clear_votes(ctx: AppContext, token: str) -> tuple[int, LinkPage]:
    """Delete every vote of the link's subscriber (liked papers stay: they are a preference)."""
    with store.transaction(ctx) as session:
        sub = links.resolve(session, ctx.secret_key, "preferences", token, ctx.now())
        assert sub.id is not None
        cleared = vote_store.clear(session, sub.id)
        return cleared, links.page_of(session, ctx.secret_key, sub)


# ---- status -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusResult:
    """After a status change: whether it changed anything, and the status now."""

    email: str
    status: SubscriberStatus
    changed: bool
    page: LinkPage | None = None


def change_status(ctx: AppContext, who: Who, move: Move) -> StatusResult:
    """Suspend, resume or confirm by an admin (CLI) or pause/resume by the person (the
    preferences page, which may not pause a pending address); TransitionError (one line)
    when the rules do not allow it."""
    now = ctx.now()
    person = isinstance(who, ByLink)
    reason = "by subscriber" if person else "admin"
    with store.transaction(ctx) as session:
        sub = find(session, ctx, who, now)
        change: Change | None
        if move == Move.SUSPEND:
            if person and sub.status == S.PENDING:
                raise lifecycle.refusal(sub, "pause")
            by = StoppedBy.PERSON if person else StoppedBy.ADMIN
            change = lifecycle.suspend(sub, now=now, by=by, reason=f"paused {reason}")
        elif move == Move.RESUME:
            change = lifecycle.resume(sub, now=now, reason=f"resumed {reason}")
        elif move == Move.CONFIRM and not person:
            change = lifecycle.confirm(sub, now=now, reason=reason)
        else:
            raise InvalidInput(f"{move} is not a change this can make")
        changed = store.save(session, sub, [change], actor=actor_of(ctx, who), now=now)
        page = links.page_of(session, ctx.secret_key, sub, changed) if person else None
        return StatusResult(sub.email, S(sub.status), changed, page)


@dataclass(frozen=True)
class Unsubscribed:
    """After an unsubscribe: the address (None when the link was one withdrawn by this
    person's own earlier unsubscribe) and whether this call changed anything."""

    email: str | None
    changed: bool
    status: SubscriberStatus = S.UNSUBSCRIBED


def unsubscribe(ctx: AppContext, who: Who, *, way: str) -> Unsubscribed:
    """Stop all mail (`way`: one-click or page from a link, admin from the CLI); twice is
    harmless (RFC 8058 wants success): a link from before this person's unsubscribe (its
    key was renewed then) still answers "unsubscribed" while they stay so, and changes
    nothing; once they subscribe again it is withdrawn (410)."""
    now = ctx.now()
    with store.transaction(ctx) as session:
        if isinstance(who, ByLink):
            claims = links.claims_of(ctx.secret_key, who.purpose, who.token, now)
            sub = store.get(session, claims.subscriber_id)
            if sub is None:
                raise LinkError(410, links.GONE)
            if sub.status == S.UNSUBSCRIBED and not tokens.bound_to(claims, sub):
                return Unsubscribed(None, False)
            sub = links.resolve(session, ctx.secret_key, who.purpose, who.token, now)
        else:
            sub = find(session, ctx, who, now)
        change = lifecycle.unsubscribe(sub, now=now, way=way)
        changed = store.save(session, sub, [change], actor=actor_of(ctx, who), now=now)
        return Unsubscribed(sub.email, changed, S(sub.status))


def lift(ctx: AppContext, email: str) -> str:
    """An admin lets mail go to a suppressed address again (a bounce or a complaint); says
    what changed, or TransitionError when there is nothing to lift."""
    now = ctx.now()
    with store.transaction(ctx) as session:
        sub = find(session, ctx, ByEmail(email), now)
        was = S(sub.status)
        change = lifecycle.lift(sub, now=now, reason="lifted by admin")
        store.save(session, sub, [change], actor=ctx.actor, now=now)
        if was == S.BOUNCED:
            return f"{sub.email} is now {sub.status} (bounce lifted)"
        return f"{sub.email}: complaint lifted (still unsubscribed; may subscribe again)"


def revoke_links(ctx: AppContext, who: Who) -> int:
    """Withdraw every link mailed so far ("sign me out of all links"); the new version."""
    now = ctx.now()
    with store.transaction(ctx) as session:
        sub = find(session, ctx, who, now)
        change = lifecycle.revoke_links(sub)
        store.save(session, sub, [change], actor=actor_of(ctx, who), now=now)
        return sub.token_version


@dataclass(frozen=True)
class Forgotten:
    """What forgetting erased (counts only: the anonymous event keeps no address)."""

    email: str
    deliveries: int
    events: int
    votes: int


def forget(ctx: AppContext, who: Who) -> Forgotten:
    """Erase a person: their row, deliveries, votes, audit history and mail counts; keep one
    anonymous event. Their id is never given to anyone else, so their links stay dead."""
    now = ctx.now()
    with store.transaction(ctx) as session:
        sub = find(session, ctx, who, now)
        assert sub.id is not None
        email = sub.email
        counts = {
            "deliveries_deleted": deliveries.forget_subscriber(session, sub.id),
            "votes_deleted": vote_store.forget(session, sub.id),
            "library_deleted": library_store.forget(session, sub.id),
            "events_deleted": store.delete_subscriber(session, sub),
        }
        store.record(
            session, None, Change(lifecycle.FORGOTTEN, counts), actor=actor_of(ctx, who), now=now
        )
        return Forgotten(
            email,
            counts["deliveries_deleted"],
            counts["events_deleted"],
            counts["votes_deleted"],
        )


def unsubscribe_link_for(ctx: AppContext, address: str) -> str | None:
    """The unsubscribe link of a subscriber mail may still be stopped for (the `unsubscribe`
    mail command mails it: From can be forged, so the click decides), or None."""
    with store.transaction(ctx) as session:
        sub = store.by_email(session, normalize_email(address))
        if sub is None or S(sub.status) not in MOVES[Move.UNSUBSCRIBE]:
            return None
        return tokens.subscriber_link(ctx.settings.base_url, ctx.secret_key, "unsubscribe", sub)


def preferences_link_for(ctx: AppContext, address: str) -> str | None:
    """The preferences link of a subscriber who gets or will get digests (active, pending,
    paused), or None: the `follow` mail command mails it with the author filled in (From can
    be forged, so the person's own click and Save decide)."""
    with store.transaction(ctx) as session:
        sub = store.by_email(session, normalize_email(address))
        if sub is None or S(sub.status) in (S.UNSUBSCRIBED, S.BOUNCED):
            return None
        return tokens.subscriber_link(ctx.settings.base_url, ctx.secret_key, "preferences", sub)
