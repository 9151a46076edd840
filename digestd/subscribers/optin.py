"""Double opt-in: recording a sign-up, the confirmation (or "already subscribed") mail it
asks for, and sending it. The web form and the `subscribe` mail command both come here, so
an address gets the same checks, limits and mail whichever way it signs up."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage

import css_inline
from jinja2 import Environment
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from digestd.core import tokens
from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Event
from digestd.core.statuses import SubscriberStatus
from digestd.core.tokens import PURPOSES
from digestd.mail.mime import compose
from digestd.mail.smtp_pool import SendError, SmtpPool
from digestd.subscribers import bounce_policy
from digestd.subscribers import lifecycle as subs

log = logging.getLogger(__name__)

ACTOR = "web"
CONFIRMATION_SENT = "confirmation_sent"
# Confirmation / manage mails one address may be sent a day (abuse control; the web's
# WebLimits and the mail command use it).
MAILS_PER_ADDRESS_PER_DAY = 3
S = SubscriberStatus
# Statuses where the address is already in (a new sign-up only sends a "manage here" mail).
SUBSCRIBED = (S.ACTIVE, S.SUSPENDED)


@dataclass(frozen=True)
class ConfirmationMail:
    """What to send: `kind` is "confirm" (pending address) or "already" (active one)."""

    kind: str
    to: str
    subscriber_id: int
    confirm_url: str = ""
    preferences_url: str = ""
    unsubscribe_url: str = ""


def build_message(env: Environment, settings: Settings, mail: ConfirmationMail) -> EmailMessage:
    """HTML (CSS inlined) and plain text from templates/email/confirm.*; safe headers."""
    values = {
        "kind": mail.kind,
        "email": mail.to,
        "confirm_url": mail.confirm_url,
        "preferences_url": mail.preferences_url,
        "unsubscribe_url": mail.unsubscribe_url,
        "expires_hours": PURPOSES["confirm"] // 3600,
        "base_url": settings.base_url,
    }
    html = css_inline.inline(env.get_template("email/confirm.html").render(values))
    text = env.get_template("email/confirm.txt").render(values)
    site = env.globals.get("site_name", "digestd")
    if mail.kind == "confirm":
        subject = f"Confirm your subscription to {site}"
    else:
        subject = f"You are already subscribed to {site}"
    headers = {"Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All"}
    return compose(
        sender=settings.from_address,
        to=mail.to,
        subject=subject,
        text=text,
        html=html,
        headers=headers,
    )


def request_subscription(
    ctx: AppContext,
    email: str,
    prefs: subs.Preferences,
    *,
    mails_per_day: int = MAILS_PER_ADDRESS_PER_DAY,
    actor: str = ACTOR,
) -> ConfirmationMail | None:
    """Record a sign-up and say which mail to send (None: this address had its share today).

    The caller answers the same way whatever this returns, so a response never tells
    whether an address was known.
    """
    for attempt in range(2):
        try:
            return _request_subscription(ctx, email, prefs, mails_per_day, actor)
        except IntegrityError:
            # Two sign-ups for one new address raced on the unique email; the second
            # attempt finds the row the other one created.
            if attempt == 1:
                raise
    return None  # pragma: no cover - the loop returns or raises


def _request_subscription(
    ctx: AppContext, email: str, prefs: subs.Preferences, mails_per_day: int, actor: str
) -> ConfirmationMail | None:
    now = ctx.now()
    key, base = ctx.secret_key, ctx.settings.base_url
    with session_scope(ctx.engine) as session:
        sub = subs.get_by_email(session, email)
        if sub is None:
            sub = subs.add_subscriber(session, email, prefs, status="pending", actor=actor, now=now)
        elif bounce_policy.is_suppressed(session, sub):
            # Bounced or complained: no mail goes there until an admin lifts it, not even a
            # confirmation. The page answers as for anyone else (no address is disclosed).
            return None
        elif sub.status not in SUBSCRIBED:
            # Pending or unsubscribed: the newest form wins, and only a click on the
            # confirmation link (proof the mailbox is theirs) makes it active again.
            subs.update_preferences(session, sub, prefs.as_dict(), actor=actor, now=now)
            subs.subscribe(session, sub, actor=actor, now=now, reason="subscribe form")
        assert sub.id is not None
        # Concurrent requests for one address may both pass this count; the cap is for
        # abuse (a handful a day), so an occasional extra mail is acceptable.
        if confirmation_mails_sent(session, sub.id, now) >= mails_per_day:
            return None
        kind = "already" if sub.status in SUBSCRIBED else "confirm"
        subs.record_event(session, sub.id, CONFIRMATION_SENT, actor=actor, now=now, kind=kind)
        if kind == "confirm":
            return ConfirmationMail(
                kind=kind,
                to=sub.email,
                subscriber_id=sub.id,
                confirm_url=tokens.subscriber_link(base, key, "confirm", sub),
            )
        return ConfirmationMail(
            kind=kind,
            to=sub.email,
            subscriber_id=sub.id,
            preferences_url=tokens.subscriber_link(base, key, "preferences", sub),
            unsubscribe_url=tokens.subscriber_link(base, key, "unsubscribe", sub),
        )


def confirmation_mails_sent(session: Session, subscriber_id: int, now: datetime) -> int:
    """How many confirmation/manage mails went to this subscriber in the last 24 hours."""
    since = now - timedelta(hours=24)
    stmt = (
        select(func.count())
        .select_from(Event)
        .where(
            Event.subscriber_id == subscriber_id,
            Event.action == CONFIRMATION_SENT,
            col(Event.created_at) >= since,
        )
    )
    return int(session.exec(stmt).one())


class ConfirmationSender:
    """Sends confirmation mails over a small SMTP pool opened on first use, in the server's loop."""

    def __init__(self, env: Environment, settings: Settings) -> None:
        self.env = env
        self.settings = settings
        self._pool: SmtpPool | None = None

    async def send(self, mail: ConfirmationMail) -> bool:
        """Send one mail; False (and a log line) when the SMTP server refused or was down."""
        if self._pool is None:
            self._pool = SmtpPool(self.settings, max_connections=2)
        message = build_message(self.env, self.settings, mail)
        try:
            # With a bounce address, a confirmation that bounces comes back to digestd too.
            await self._pool.send(message, sender=self.settings.bounce_address or None)
        except SendError as exc:
            log.warning(
                "confirmation mail to subscriber %s not sent: %s",
                mail.subscriber_id,
                exc,
                extra={"subscriber_id": mail.subscriber_id},
            )
            return False
        return True

    async def close(self) -> None:
        """Close the pool's connections (server shutdown)."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
