"""Processing one inbound message: parse, classify, find the delivery, apply the policy, record.

Every transport calls `process_message` (the `digestd inbound` command, the SMTP listener,
IMAP polling). It commits its own transaction and never raises on bad input: whatever
cannot be read becomes an `unrecognized` record. Only a database failure propagates, so
the transport can tell the sending MTA to try again later rather than lose the message.

Idempotency: processing the same message twice records it twice (that is what happened),
and the policy is safe to repeat: an unsubscribe or complaint changes nothing the second
time, a hard bounce finds the address bounced already, and soft bounces count once a day.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from sqlmodel import Session

from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import INBOUND_KINDS, Subscriber
from digestd.delivery import deliveries
from digestd.inbound import addresses, commands, store
from digestd.inbound.classify import Reading, RecipientReport, classify
from digestd.inbound.parse import Parsed, one_line, parse
from digestd.subscribers import bounce_policy
from digestd.subscribers import lifecycle as subs

log = logging.getLogger(__name__)
ACTOR = "inbound"
KINDS = INBOUND_KINDS  # what an inbound record's `kind` can be (the --json contract)
# Headers that may carry the address a message was delivered to (when no envelope is given).
_DELIVERED_TO = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To", "Cc")


@dataclass
class InboundResult:
    """What one message was and what it did: `as_json()` is the `--json` contract object."""

    kind: str
    recorded_id: int | None = None
    source: str = ""
    recipients: list[RecipientReport] = field(default_factory=list)
    subscriber: str | None = None
    delivery: int | None = None
    summary: str = ""
    effect: str = ""
    replies: list[EmailMessage] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """`{"file", "kind", "recipients", "subscriber", "delivery"}` (issue 10's contract)."""
        return {
            "file": self.source,
            "kind": self.kind,
            "recipients": [r.as_json() for r in self.recipients],
            "subscriber": self.subscriber,
            "delivery": self.delivery,
        }


@dataclass
class _Found:
    subscriber: Subscriber | None = None
    delivery: deliveries.DeliveryRow | None = None
    how: str = ""
    refused: str = ""  # why a token was not honoured (tampered, revoked)


def _ours(ctx: AppContext, parsed: Parsed, rcpt_to: Sequence[str]) -> list[addresses.OurAddress]:
    candidates = list(rcpt_to)
    if not candidates and parsed.message is not None:
        candidates = addresses.addresses_in([parsed.header(h) for h in _DELIVERED_TO])
    out = []
    for address in candidates:
        ours = addresses.read_address(ctx.settings, address)
        if ours is not None:
            out.append(ours)
    return out


def _find(
    ctx: AppContext, session: Session, reading: Reading, ours: list[addresses.OurAddress]
) -> _Found:
    """VERP token first, then the returned Message-ID, then the failed recipient's address."""
    key = ctx.secret_key
    tokens = [o for o in ours if o.role in ("verp", "unsubscribe") or o.tampered]
    for o in tokens:
        if o.role == "verp" and addresses.verify_delivery(key, o) and o.ident is not None:
            ref = deliveries.get(session, o.ident)
            if ref is None:
                return _Found(refused="its delivery no longer exists: nothing changed")
            return _Found(session.get(Subscriber, ref.subscriber_id), ref, "verp")
        if o.role == "unsubscribe" and o.ident is not None:
            sub = session.get(Subscriber, o.ident)
            if sub is not None and addresses.verify_subscriber(key, o, sub.token_version):
                return _Found(sub, None, "unsubscribe token")
    if tokens:
        # A token we did not sign (or revoked): never fall back to guessing from the content,
        # or anyone could bounce or unsubscribe any address by mailing us a forged report.
        return _Found(refused="token not valid (tampered or revoked): nothing changed")
    if reading.original_message_id:
        ref = deliveries.find_by_message_id(session, _bracketed(reading.original_message_id))
        if ref is not None:
            return _Found(session.get(Subscriber, ref.subscriber_id), ref, "message-id")
    for r in reading.recipients:
        try:
            sub = subs.get_by_email(session, r.address)
        except subs.InvalidInput:
            continue
        if sub is not None and sub.id is not None:
            return _Found(sub, deliveries.latest_sent(session, sub.id), "address")
    return _Found()


def _bracketed(message_id: str) -> str:
    value = message_id.strip()
    return value if value.startswith("<") else f"<{value}>"


def _their_report(reading: Reading, sub: Subscriber | None) -> RecipientReport | None:
    """The recipient report about this subscriber (or the only/first failure)."""
    if not reading.recipients:
        return None
    if sub is not None:
        for r in reading.recipients:
            if r.address.lower() == sub.email or r.final.lower() == sub.email:
                return r
    failed = [r for r in reading.recipients if r.action == "failed"]
    return (failed or reading.recipients)[0]


def _summary(kind: str, parsed: Parsed, reading: Reading, report: RecipientReport | None) -> str:
    if kind == "bounce" and report is not None:
        f = report.failure
        more = f" (+{len(reading.recipients) - 1} more)" if len(reading.recipients) > 1 else ""
        return (
            f"{report.action} {report.address}{more}: {f.status or '-'} {f.reason} ({f.severity})"
        )
    if kind == "complaint":
        who = ", ".join(r.address for r in reading.recipients[:3]) or "unknown recipient"
        return f"{reading.feedback_type or 'abuse'} complaint about mail to {who}"
    if kind == "delivery_report":
        return "delivered: " + ", ".join(r.address for r in reading.recipients[:3])
    subject = parsed.header("Subject")
    sender = parsed.header("From")
    if kind == "unrecognized" and parsed.problem:
        return f"{parsed.problem}; from {sender or '-'}"
    return f"from {sender or '-'}: {subject or '(no subject)'}"


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
    try:
        ours = _ours(ctx, parsed, rcpt_to)
        roles = {o.role for o in ours}
        person = bool(roles & {"unsubscribe", "request"})
        reading = classify(parsed, mail_from=mail_from, person_mail=person)
    except Exception as exc:  # hostile input that got past the parser: record, never crash
        log.warning("inbound message from %s not readable: %s", source or "-", exc)
        parsed.problem = one_line(f"not readable: {type(exc).__name__}: {exc}", 200)
        ours, roles, reading = [], set(), Reading(kind="")
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
    kind = kind or "unrecognized"
    result = InboundResult(kind=kind, source=source, recipients=reading.recipients)
    command: commands.Outcome | None = None
    if kind == "command" and not dry_run:
        # Before our own transaction: the subscribe flow commits its own (one writer on SQLite).
        command = commands.handle(ctx, parsed, mail_from=mail_from, source=source)
        result.replies.extend(command.replies)

    with session_scope(ctx.engine) as session:
        found = _find(ctx, session, reading, ours) if kind != "unrecognized" else _Found()
        sub = found.subscriber
        report = _their_report(reading, sub)
        result.subscriber = sub.email if sub is not None else None
        result.delivery = found.delivery.id if found.delivery is not None else None
        result.summary = one_line(_summary(kind, parsed, reading, report), 300)
        if dry_run:
            session.rollback()
            return result
        now = ctx.now()
        if command is not None:
            effect = command.effect
        else:
            effect = _apply(ctx, session, kind, reading, report, found)
        result.effect = one_line(effect, 300)
        address = command.sender if command is not None else (report.address if report else "")
        row = store.record(
            session,
            received_at=now,
            kind=kind,
            source=one_line(source, 200),
            subscriber_id=sub.id if sub is not None else None,
            delivery_id=result.delivery,
            address=address[:320],
            status_code=(report.status or report.failure.status)[:16] if report else "",
            severity=report.failure.severity[:8] if report and kind == "bounce" else "",
            reason=_reason(kind, reading, report, found),
            summary=result.summary,
            effect=result.effect,
            message_id=parsed.header("Message-ID")[:255],
            size=parsed.size,
            recipients=[r.as_json() for r in reading.recipients[:50]],
            headers=parsed.headers,
        )
        result.recorded_id = row.id
    ctx.metrics.inbound_received(kind)  # committed: counted once, like the row
    if result.replies:
        commands.send_replies(ctx, result.replies)
    return result


def _reason(kind: str, reading: Reading, report: RecipientReport | None, found: _Found) -> str:
    if kind == "bounce" and report is not None:
        return one_line(report.diagnostic or report.failure.reason, 1000)
    if kind == "complaint":
        return reading.feedback_type or "abuse"
    if found.refused:
        return found.refused
    return reading.note


def _apply(
    ctx: AppContext,
    session: Session,
    kind: str,
    reading: Reading,
    report: RecipientReport | None,
    found: _Found,
) -> str:
    """The policy's verdict for this message, applied; returns what changed, in a few words."""
    now, sub = ctx.now(), found.subscriber
    if found.refused:
        return found.refused
    if kind == "bounce":
        if sub is None or report is None:
            return "no subscriber found: nothing changed"
        detail = {"via": "inbound", "status": report.failure.status, "dsn_action": report.action}
        return bounce_policy.apply_failure(
            session, sub, report.failure, ctx.settings, actor=ACTOR, now=now, detail=detail
        )
    if kind == "complaint":
        if sub is None:
            return "no subscriber found: nothing changed"
        detail = {"feedback_type": reading.feedback_type or "abuse"}
        return bounce_policy.apply_complaint(session, sub, actor=ACTOR, now=now, detail=detail)
    if kind == "unsubscribe":
        if sub is None:
            return "no subscriber found: nothing changed"
        return bounce_policy.apply_unsubscribe(session, sub, actor=ACTOR, now=now)
    return "nothing changed"
