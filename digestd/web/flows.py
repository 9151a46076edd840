"""What each page does to the database: one transaction per request, owned here.

These functions are synchronous (SQLAlchemy sessions); the routes run them in
the thread pool. Services (`digestd.subscribers.lifecycle`) never commit; `session_scope`
commits each flow as a whole or rolls it back.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from digestd.core import tokens
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Subscriber
from digestd.core.statuses import SubscriberStatus
from digestd.subscribers import lifecycle as subs
from digestd.subscribers import votes
from digestd.subscribers.optin import SUBSCRIBED
from digestd.web import links

ACTOR = "web"
S = SubscriberStatus
CONFIRMATION_FAILED = "confirmation_failed"


@dataclass(frozen=True)
class Page:
    """A subscriber as a page shows it, with fresh tokens for the page's own forms."""

    sub: Subscriber
    preferences_token: str
    unsubscribe_token: str
    changed: bool = False
    # The subscriber's votes and liked papers, newest first (the preference centre lists them).
    votes: tuple[votes.VoteView, ...] = ()


def _page(ctx: AppContext, sub: Subscriber, changed: bool = False) -> Page:
    key = ctx.secret_key
    # The page lists the subscriber's votes, read in the flow's own session (transaction).
    session = Session.object_session(sub)
    listed = (
        votes.listing(session, sub.id)  # type: ignore[arg-type]  # a sqlmodel Session
        if session is not None and sub.id
        else []
    )
    return Page(
        sub=sub,
        preferences_token=tokens.subscriber_token(key, "preferences", sub),
        unsubscribe_token=tokens.subscriber_token(key, "unsubscribe", sub),
        changed=changed,
        votes=tuple(listed),
    )


def record_send_failure(ctx: AppContext, subscriber_id: int) -> None:
    """Note that a confirmation mail could not be handed to the SMTP server."""
    with session_scope(ctx.engine) as session:
        if session.get(Subscriber, subscriber_id) is not None:
            subs.record_event(
                session, subscriber_id, CONFIRMATION_FAILED, actor=ACTOR, now=ctx.now()
            )


def confirm(ctx: AppContext, token: str) -> Page:
    """Activate a pending subscriber from their confirmation link (active ones just see it)."""
    now = ctx.now()
    with session_scope(ctx.engine) as session:
        sub = links.resolve(session, ctx.secret_key, "confirm", token, now)
        if sub.status in SUBSCRIBED:
            return _page(ctx, sub)  # confirmed already: the link just shows the page
        try:
            changed = subs.confirm(session, sub, actor=ACTOR, now=now, reason="confirmed by link")
        except subs.TransitionError:
            raise links.LinkError(
                410,
                "This confirmation link belongs to a subscription that has ended. "
                "Please subscribe again.",
            ) from None
        return _page(ctx, sub, changed)


def show(ctx: AppContext, purpose: str, token: str) -> Page:
    """The subscriber behind a link, without changing anything."""
    with session_scope(ctx.engine) as session:
        sub = links.resolve(session, ctx.secret_key, purpose, token, ctx.now())
        return _page(ctx, sub)


def unsubscribe(ctx: AppContext, token: str, *, how: str) -> Page:
    """Stop all mail at once (RFC 8058); unsubscribing twice is fine. `how` is the way
    ("one-click" or "page")."""
    now = ctx.now()
    with session_scope(ctx.engine) as session:
        sub = links.resolve(session, ctx.secret_key, "unsubscribe", token, now)
        changed = subs.unsubscribe(session, sub, actor=ACTOR, now=now, way=how)
        return _page(ctx, sub, changed)


def save_preferences(ctx: AppContext, token: str, prefs: subs.Preferences) -> Page:
    """Store new preferences from the preference center."""
    now = ctx.now()
    with session_scope(ctx.engine) as session:
        sub = links.resolve(session, ctx.secret_key, "preferences", token, now)
        diff = subs.update_preferences(session, sub, prefs.as_dict(), actor=ACTOR, now=now)
        return _page(ctx, sub, bool(diff))


def set_paused(ctx: AppContext, token: str, paused: bool) -> tuple[Page, str | None]:
    """Pause (suspend) or resume; the second value is a message when that is not possible."""
    now = ctx.now()
    with session_scope(ctx.engine) as session:
        sub = links.resolve(session, ctx.secret_key, "preferences", token, now)
        # A person pauses only an active subscription (an admin may also pause a pending one).
        if paused and sub.status == S.PENDING:
            return _page(ctx, sub), _why_not(sub.status)
        move = subs.suspend if paused else subs.resume
        reason = "paused by subscriber" if paused else "resumed by subscriber"
        try:
            changed = move(session, sub, actor=ACTOR, now=now, reason=reason)
        except subs.TransitionError:
            return _page(ctx, sub), _why_not(sub.status)
        return _page(ctx, sub, changed), None


def _why_not(status: str) -> str:
    if status == S.PENDING:
        return "Please confirm your address first (see the email we sent)."
    return "This subscription has ended. Please subscribe again from the home page."


def forget(ctx: AppContext, token: str) -> None:
    """Delete the person's data for good (same as `subscribers remove --forget`)."""
    now = ctx.now()
    with session_scope(ctx.engine) as session:
        sub = links.resolve(session, ctx.secret_key, "preferences", token, now)
        subs.forget(session, sub, actor=ACTOR, now=now)


def database_ok(ctx: AppContext) -> tuple[bool, str]:
    """Whether the database answers a trivial query (for /healthz)."""
    from sqlalchemy import text

    try:
        with ctx.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means "not reachable" here
        first = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        return False, first[:200]
    return True, "ok"
