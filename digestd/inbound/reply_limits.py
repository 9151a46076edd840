"""Hourly caps on replies to mail commands: per recipient, per sender, and in total.

The request address answers mail, and anyone can write to it in anyone's name: 30 forged
messages once made us mail 30 strangers in 2.4 s. A reply goes only to an envelope sender
that From names too (`commands.reply_address`), and at most
`DIGESTD_COMMAND_REPLIES_PER_HOUR_RECIPIENT` replies an hour go to one address,
`…_SENDER` to one sender, `…_TOTAL` in all. The sender is where the mail came from: the
SMTP client's address (an IPv6 one by its /64) when digestd's own listener took it, else
(IMAP, a pipe, a file) the sender's domain, the only part that cannot be varied freely.

Counted in the database (`command_reply`, this module's table), so the caps hold across
restarts and replicas. Rows hold no personal data, only keyed hashes, and are deleted a
day later. The check and the record are separate steps: two replicas answering at the
same instant can each send one reply past a cap, never more.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, delete, func, select

from digestd.core.config import Settings
from digestd.core.models import CommandReply
from digestd.core.netaddr import client_key

WINDOW = timedelta(hours=1)
KEEP = timedelta(days=1)


@dataclass(frozen=True)
class ReplyCaps:
    """Replies allowed per hour (0: none)."""

    per_recipient: int
    per_sender: int
    total: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ReplyCaps:
        return cls(
            per_recipient=settings.command_replies_per_hour_recipient,
            per_sender=settings.command_replies_per_hour_sender,
            total=settings.command_replies_per_hour_total,
        )


def sender_of(source: str, address: str) -> str:
    """Who sent a command, for the per-sender cap: `net:` the SMTP client's address (an
    IPv6 one by its /64) for the listener (`source` is `smtp:HOST:PORT`), else `domain:`
    the sender's domain."""
    if source.startswith("smtp:"):
        host = source.removeprefix("smtp:").rpartition(":")[0]
        if host:
            return "net:" + client_key(host)
    return "domain:" + address.rpartition("@")[2].lower()


def _hash(secret: str, kind: str, value: str) -> str:
    return hmac.new(secret.encode(), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:32]


def refusal(
    session: Session,
    secret: str,
    caps: ReplyCaps,
    *,
    recipient: str,
    sender: str,
    now: datetime,
) -> str:
    """'' when one more reply may go to `recipient`, else which hourly cap is reached."""
    recent = (
        select(func.count())
        .select_from(CommandReply)
        .where(col(CommandReply.sent_at) > now - WINDOW)
    )
    if caps.total <= 0 or session.exec(recent).one() >= caps.total:
        return "hourly limit of replies reached"
    to = _hash(secret, "recipient", recipient)
    if session.exec(recent.where(CommandReply.recipient == to)).one() >= caps.per_recipient:
        return f"hourly limit of replies to {recipient} reached"
    by = _hash(secret, "sender", sender)
    if session.exec(recent.where(CommandReply.sender == by)).one() >= caps.per_sender:
        return "hourly limit of replies for this sender reached"
    return ""


def record(session: Session, secret: str, *, recipient: str, sender: str, now: datetime) -> None:
    """Count one reply (the caller commits), and forget those older than a day."""
    session.exec(delete(CommandReply).where(col(CommandReply.sent_at) < now - KEEP))
    session.add(
        CommandReply(
            sent_at=now,
            recipient=_hash(secret, "recipient", recipient),
            sender=_hash(secret, "sender", sender),
        )
    )
