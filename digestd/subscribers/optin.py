"""Double opt-in mail: the confirmation (or "already subscribed") mail a sign-up asks for,
built from templates and sent over a small SMTP pool. The sign-up itself (what is recorded,
the daily cap) is `digestd.subscribers.signup`, shared by the web form and the `subscribe`
mail command."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.message import EmailMessage

import css_inline
from jinja2 import Environment

from digestd.core.config import Settings
from digestd.core.tokens import PURPOSES
from digestd.mail.mime import compose
from digestd.mail.smtp_pool import SendError, SmtpPool

log = logging.getLogger(__name__)

# Mails one address may be sent a day that are not digests: confirmations, "already
# subscribed" mails and replies to mail commands, together (abuse control: nobody can make
# digestd mail an address more than this, whichever way they ask).
MAILS_PER_ADDRESS_PER_DAY = 3


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
