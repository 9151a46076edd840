"""Processing one inbound message: parse, read once, classify, route, then record and apply.

Every transport calls `process_message` (the `digestd inbound` command, the SMTP listener,
IMAP polling). It commits its own transaction and never raises on bad input: whatever
cannot be read becomes an `unrecognized` record. Only a database failure propagates, so
the transport can tell the sending MTA to try again later rather than lose the message.
What a message may change is decided by its evidence (`evidence`), and the record and the
policy are the step webhooks share (`record.record_reading`).

Bounded work (issue 23): one worker reads inbound mail, so no message may hold it for
long. Rather than a second lane for big messages (with SQLite's single writer a second
worker would only queue on the write lock), the work of each message is bounded whatever
it contains: at most MAX_PARSED bytes are parsed (linear), the message is walked once
(`message.Mail`), at most MAX_PARTS parts and MAX_RECIPIENTS recipients are read, and at
most ~10 Message-IDs and one token are looked up. Messages are then served in arrival
order, each in bounded time (benchmarks/README.md: the worst shapes we know cost ~1 s).

Idempotency: processing the same message twice records it twice (that is what happened),
and the policy is safe to repeat: an unsubscribe or complaint changes nothing the second
time, a hard bounce finds the address bounced already, and soft bounces count once a day.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from digestd.core.context import AppContext
from digestd.core.models import INBOUND_KINDS
from digestd.inbound import addresses, commands
from digestd.inbound.classify import classify
from digestd.inbound.evidence import Claims
from digestd.inbound.message import Mail
from digestd.inbound.parse import Parsed, one_line, parse
from digestd.inbound.reading import Reading
from digestd.inbound.record import ACTOR, Handled, InboundResult, Received, record_reading

__all__ = ["ACTOR", "KINDS", "InboundResult", "process_message"]

log = logging.getLogger(__name__)
KINDS = INBOUND_KINDS  # what an inbound record's `kind` can be (the --json contract)
# Headers that may carry the address a message was delivered to (when no envelope is given).
_DELIVERED_TO = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To", "Cc")
MAX_OUR_ADDRESSES = 10  # of ours looked at in one message (envelope or headers)


def _ours(ctx: AppContext, mail: Mail, rcpt_to: Sequence[str]) -> tuple[addresses.OurAddress, ...]:
    candidates = list(rcpt_to)
    if not candidates and mail.message is not None:
        candidates = addresses.addresses_in([mail.header(h) for h in _DELIVERED_TO])
    out = []
    for address in candidates:
        ours = addresses.read_address(ctx.settings, address)
        if ours is not None:
            out.append(ours)
        if len(out) >= MAX_OUR_ADDRESSES:
            break
    return tuple(out)


def _received(parsed: Parsed, mail: Mail, source: str) -> Received:
    return Received(
        source=source,
        message_id=mail.header("Message-ID")[:255],
        size=parsed.size,
        headers=parsed.headers,
        sender=mail.header("From"),
        subject=mail.header("Subject"),
        problem=parsed.problem,
        unread=parsed.unread,
    )


def process_message(
    ctx: AppContext,
    raw: bytes,
    *,
    mail_from: str | None = None,
    rcpt_to: Sequence[str] = (),
    source: str = "",
    dry_run: bool = False,
) -> InboundResult:
    """Read one inbound message, act on it (unless `dry_run`) and record it; see the module."""
    parsed = parse(raw, ctx.settings.inbound_max_bytes)
    mail = Mail(parsed)
    try:
        claims = Claims(_ours(ctx, mail, rcpt_to))
        person = bool(claims.roles & {"unsubscribe", "request"})
        reading = classify(mail, mail_from=mail_from, person_mail=person)
    except Exception as exc:  # hostile input that got past the parser: record, never crash
        log.warning("inbound message from %s not readable: %s", source or "-", exc)
        parsed.problem = one_line(f"not readable: {type(exc).__name__}: {exc}", 200)
        claims, reading = Claims(), Reading(kind="")
    roles = claims.roles
    kind = reading.kind
    if kind == "auto_reply" and "unsubscribe" in roles:
        # Mail providers send the List-Unsubscribe mailto: on the user's behalf, sometimes
        # marked automatic; the signed address is the proof of intent, so it still counts.
        kind = ""
    if not kind and parsed.message is not None and not parsed.problem:
        if "unsubscribe" in roles:
            kind = "unsubscribe"
        elif "request" in roles:
            kind = "command"
    reading.kind = kind or "unrecognized"
    handled: Handled | None = None
    replies = []
    if reading.kind == "command" and not dry_run:
        # Before our own transaction: the subscribe flow commits its own (one writer on SQLite).
        command = commands.handle(ctx, parsed, mail_from=mail_from, source=source)
        handled = Handled(command.effect, command.sender)
        replies = command.replies
    result = record_reading(
        ctx,
        reading,
        claims,
        received=_received(parsed, mail, source),
        dry_run=dry_run,
        handled=handled,
    )
    result.replies.extend(replies)
    if result.replies and not dry_run:
        commands.send_replies(ctx, result.replies)
    return result
