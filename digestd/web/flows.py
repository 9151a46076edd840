"""What each page does to the database: one transaction per request, owned here.

These functions are synchronous (SQLAlchemy sessions); the routes run them in
the thread pool. Services (`digestd.subscribers`) never commit; `session_scope`
commits each flow as a whole or rolls it back.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from digestd import bounce_policy, votes
from digestd import subscribers as subs
from digestd.context import AppContext
from digestd.db import session_scope
from digestd.models import Subscriber
from digestd.statuses import SubscriberStatus
from digestd.web import links
from digestd.web.mail import ConfirmationMail
from digestd.web.ratelimit import CONFIRMATION_SENT, confirmation_mails_sent

ACTOR = "web"
CONFIRMATION_FAILED = "confirmation_failed"
S = SubscriberStatus
# Statuses where the address is already in (a new sign-up only sends a "manage here" mail).
SUBSCRIBED = (S.ACTIVE, S.SUSPENDED)


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
        preferences_token=links.token_of(key, "preferences", sub),
        unsubscribe_token=links.token_of(key, "unsubscribe", sub),
        changed=changed,
        votes=tuple(listed),
    )


def request_subscription(
    ctx: AppContext, email: str, prefs: subs.Preferences, *, mails_per_day: int
) -> ConfirmationMail | None:
    """Record a sign-up and say which mail to send (None: this address had its share today).

    The caller answers the same way whatever this returns, so a response never tells
    whether an address was known.
    """
    for attempt in range(2):
        try:
            return _request_subscription(ctx, email, prefs, mails_per_day)
        except IntegrityError:
            # Two sign-ups for one new address raced on the unique email; the second
            # attempt finds the row the other one created.
            if attempt == 1:
                raise
    return None  # pragma: no cover - the loop returns or raises


def _request_subscription(
    ctx: AppContext, email: str, prefs: subs.Preferences, mails_per_day: int
) -> ConfirmationMail | None:
    now = ctx.now()
    key, base = ctx.secret_key, ctx.settings.base_url
    with session_scope(ctx.engine) as session:
        sub = subs.get_by_email(session, email)
        if sub is None:
            sub = subs.add_subscriber(session, email, prefs, status="pending", actor=ACTOR, now=now)
        elif bounce_policy.is_suppressed(session, sub):
            # Bounced or complained: no mail goes there until an admin lifts it, not even a
            # confirmation. The page answers as for anyone else (no address is disclosed).
            return None
        elif sub.status not in SUBSCRIBED:
            # Pending or unsubscribed: the newest form wins, and only a click on the
            # confirmation link (proof the mailbox is theirs) makes it active again.
            subs.update_preferences(session, sub, prefs.as_dict(), actor=ACTOR, now=now)
            subs.subscribe(session, sub, actor=ACTOR, now=now, reason="subscribe form")
        assert sub.id is not None
        # Concurrent requests for one address may both pass this count; the cap is for
        # abuse (a handful a day), so an occasional extra mail is acceptable.
        if confirmation_mails_sent(session, sub.id, now) >= mails_per_day:
            return None
        kind = "already" if sub.status in SUBSCRIBED else "confirm"
        subs.record_event(session, sub.id, CONFIRMATION_SENT, actor=ACTOR, now=now, kind=kind)
        if kind == "confirm":
            return ConfirmationMail(
                kind=kind,
                to=sub.email,
                subscriber_id=sub.id,
                confirm_url=links.url(base, key, "confirm", sub),
            )
        return ConfirmationMail(
            kind=kind,
            to=sub.email,
            subscriber_id=sub.id,
            preferences_url=links.url(base, key, "preferences", sub),
            unsubscribe_url=links.url(base, key, "unsubscribe", sub),
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
