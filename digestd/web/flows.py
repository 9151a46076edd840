"""What the pages behind signed links do: each a use case of `digestd.subscribers`
(one transaction each, owned there), and the health check's database probe."""

from __future__ import annotations

from digestd.core.context import AppContext
from digestd.core.statuses import Move, SubscriberStatus
from digestd.subscribers import library, manage, signup
from digestd.subscribers.links import LinkPage
from digestd.subscribers.manage import ByLink, Unsubscribed, Updated
from digestd.subscribers.preferences import InvalidInput, Preferences

ACTOR = "web"
Page = LinkPage


def confirm(ctx: AppContext, token: str) -> LinkPage:
    """Activate a pending subscriber from their confirmation page's button (active ones just
    see their page)."""
    return signup.confirm_by_link(ctx, token, actor=ACTOR)


def confirmation_page(ctx: AppContext, token: str) -> LinkPage:
    """The subscriber behind a confirmation link, confirming nothing (the GET)."""
    return signup.confirmation_page(ctx, token)


def show(ctx: AppContext, purpose: str, token: str) -> LinkPage:
    """The subscriber behind a link, without changing anything."""
    return manage.show_link(ctx, purpose, token)


def unsubscribe(ctx: AppContext, token: str, *, how: str) -> Unsubscribed:
    """Stop all mail at once (RFC 8058); unsubscribing twice is fine. `how` is the way
    ("one-click" or "page")."""
    return manage.unsubscribe(ctx, ByLink("unsubscribe", token), way=how)


def save_preferences(
    ctx: AppContext, token: str, prefs: Preferences, liked: list[str] | None
) -> Updated:
    """Store new preferences (and "papers I like", when given) from the preference center."""
    return manage.update(ctx, ByLink("preferences", token), prefs.as_dict(), liked=liked)


def import_library(ctx: AppContext, token: str, data: bytes) -> library.Imported:
    """Replace the subscriber's library with an uploaded file's papers (BadLibrary: one line,
    nothing stored)."""
    return library.import_library(ctx, ByLink("preferences", token), data)


def remove_library(ctx: AppContext, token: str) -> tuple[int, LinkPage]:
    """Remove the subscriber's whole library; returns how many papers it had."""
    removed, page = library.remove_library(ctx, ByLink("preferences", token))
    assert page is not None
    return removed, page


def follow_authors(ctx: AppContext, token: str, names: list[str]) -> Updated:
    """Follow these authors too (the ones a library import offered)."""
    return manage.follow_authors(ctx, ByLink("preferences", token), names)


def clear_votes(ctx: AppContext, token: str) -> tuple[int, LinkPage]:
    """Delete every vote of the subscriber (liked papers stay)."""
    return manage.clear_votes(ctx, token)


def set_paused(ctx: AppContext, token: str, paused: bool) -> tuple[LinkPage, str | None]:
    """Pause (suspend) or resume; the second value is a message when that is not possible."""
    move = Move.SUSPEND if paused else Move.RESUME
    try:
        done = manage.change_status(ctx, ByLink("preferences", token), move)
    except InvalidInput:
        page = manage.show_link(ctx, "preferences", token)
        return page, _why_not(str(page.sub.status))
    assert done.page is not None
    return done.page, None


def _why_not(status: str) -> str:
    if status == SubscriberStatus.PENDING:
        return "Please confirm your address first (see the email we sent)."
    return "This subscription has ended. Please subscribe again from the home page."


def sign_out_everywhere(ctx: AppContext, token: str) -> None:
    """Withdraw every link mailed so far ("sign me out of all links")."""
    manage.revoke_links(ctx, ByLink("preferences", token))


def forget(ctx: AppContext, token: str) -> None:
    """Delete the person's data for good (same as `subscribers remove --forget`)."""
    manage.forget(ctx, ByLink("preferences", token))


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
