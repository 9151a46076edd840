"""Recording a reading and applying the policy: the one step every way in shares.

Mail (`process.process_message`: the MTA pipe, the SMTP listener, IMAP) and provider
webhooks (SES, SendGrid, Postmark, Mailgun, Standard Webhooks) both end here, so a bounce
or a complaint is recorded the same way, needs the same evidence and meets the same
policy (`subscribers.bounce_policy`) whichever way it came.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from sqlmodel import Session

from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.inbound import evidence as ev
from digestd.inbound import store
from digestd.inbound.parse import one_line
from digestd.inbound.reading import Reading, RecipientReport
from digestd.subscribers import bounce_policy

ACTOR = "inbound"
MAX_RECORDED_RECIPIENTS = 50  # recipient objects kept in the record


@dataclass
class Received:
    """Where a reading came from and what the record keeps of the message itself."""

    source: str = ""  # "smtp:1.2.3.4:5678", a file name, "imap:…", "webhook:ses"
    message_id: str = ""  # of the inbound message (or the provider's event id)
    size: int = 0
    headers: Sequence[Sequence[str]] = ()
    sender: str = ""  # its From
    subject: str = ""
    problem: str = ""  # why it could not be read (then kind is `unrecognized`)
    unread: int = 0  # bytes past what was read


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
    evidence: str | None = None
    replies: list[EmailMessage] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """`{"file", "kind", "recipients", "subscriber", "delivery", "evidence"}` (issue 10's
        contract, and issue 23's `evidence`: verp, message-id, mailto-token, provider or null)."""
        return {
            "file": self.source,
            "kind": self.kind,
            "recipients": [r.as_json() for r in self.recipients],
            "subscriber": self.subscriber,
            "delivery": self.delivery,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class Handled:
    """A mail command already carried out (its own transaction): what to record of it."""

    effect: str
    sender: str


def record_reading(
    ctx: AppContext,
    reading: Reading,
    claims: ev.Claims = ev.Claims(),
    *,
    received: Received,
    dry_run: bool = False,
    handled: Handled | None = None,
) -> InboundResult:
    """Find the evidence, apply the policy where there is some, record the message: one
    transaction. The step shared by mail and provider webhooks.

    `reading.kind` is final here (bounce, complaint, unsubscribe, delivery_report,
    auto_reply, command, unrecognized). `claims` is what the transport vouches for: the
    addresses of ours the message came to (tokens), or `Claims(provider="ses")` for a
    webhook event whose signature was verified. A webhook builds its `Reading` from the
    event (kind, recipients with `read_failure(...)`, the Message-ID it names in
    `message_ids`) and calls this with `Received(source="webhook:ses", message_id=<event
    id>)`; a verified event naming our Message-ID or a recipient we sent to is evidence.
    Without evidence a bounce or complaint is recorded (kind, addresses) and changes
    nothing. `dry_run` reads and finds, changes and records nothing. Returns what it did;
    only a database failure raises.
    """
    kind = reading.kind
    result = InboundResult(kind=kind, source=received.source, recipients=reading.recipients)
    with session_scope(ctx.engine) as session:
        if kind in ("unrecognized", "command"):
            found = ev.Finding()
        else:
            found = ev.find(session, ctx.secret_key, reading, claims)
        sub = found.subscriber
        report = found.report or _first_failure(reading)
        result.evidence = found.kind or None
        result.subscriber = sub.email if sub is not None else None
        result.delivery = found.delivery.id if found.delivery is not None else None
        result.summary = one_line(_summary(kind, received, reading, report), 300)
        if dry_run:
            session.rollback()
            return result
        if handled is not None:
            effect = handled.effect
        else:
            effect = _apply(ctx, session, kind, reading, found)
        result.effect = one_line(effect, 300)
        address = handled.sender if handled is not None else (report.address if report else "")
        row = store.record(
            session,
            received_at=ctx.now(),
            kind=kind,
            source=one_line(received.source, 200),
            subscriber_id=sub.id if sub is not None else None,
            delivery_id=result.delivery,
            address=address[:320],
            status_code=(report.status or report.failure.status)[:16] if report else "",
            severity=report.failure.severity[:8] if report and kind == "bounce" else "",
            reason=_reason(kind, reading, report, found),
            summary=result.summary,
            effect=result.effect,
            evidence=found.kind,
            message_id=received.message_id[:255],
            size=received.size,
            recipients=[r.as_json() for r in reading.recipients[:MAX_RECORDED_RECIPIENTS]],
            headers=[list(h) for h in received.headers],
        )
        result.recorded_id = row.id
    ctx.metrics.inbound_received(kind)  # committed: counted once, like the row
    return result


def _first_failure(reading: Reading) -> RecipientReport | None:
    """What a record without evidence shows: the first failed recipient (or the first)."""
    if not reading.recipients:
        return None
    failed = [r for r in reading.recipients if r.action == "failed"]
    return (failed or reading.recipients)[0]


def _summary(
    kind: str, received: Received, reading: Reading, report: RecipientReport | None
) -> str:
    more = reading.more_recipients
    unread = f" ({more} more named, not read)" if more else ""
    if kind == "bounce" and report is not None:
        f = report.failure
        others = len(reading.recipients) - 1
        plus = f" (+{others} more)" if others > 0 else ""
        said = f"{f.status or '-'} {f.reason} ({f.severity})"
        return f"{report.action} {report.address}{plus}: {said}{unread}"
    if kind == "complaint":
        who = ", ".join(r.address for r in reading.recipients[:3]) or "unknown recipient"
        return f"{reading.feedback_type or 'abuse'} complaint about mail to {who}{unread}"
    if kind == "delivery_report":
        return "delivered: " + ", ".join(r.address for r in reading.recipients[:3]) + unread
    if kind == "unrecognized" and received.problem:
        return f"{received.problem}; from {received.sender or '-'}"
    return f"from {received.sender or '-'}: {received.subject or '(no subject)'}"


def _reason(kind: str, reading: Reading, report: RecipientReport | None, found: ev.Finding) -> str:
    if kind == "bounce" and report is not None:
        return one_line(report.diagnostic or report.failure.reason, 1000)
    if kind == "complaint":
        return reading.feedback_type or "abuse"
    if found.refused:
        return found.refused
    return reading.note


def _apply(
    ctx: AppContext, session: Session, kind: str, reading: Reading, found: ev.Finding
) -> str:
    """The policy's verdict for this message, applied; returns what changed, in a few words."""
    now, sub, report = ctx.now(), found.subscriber, found.report
    if found.refused:
        return found.refused
    if kind in ev.ACTING_KINDS and (sub is None or not found.kind):
        return f"{ev.NO_EVIDENCE}: nothing changed"
    if kind == "bounce" and sub is not None:
        if report is None:
            return "no failed recipient for the subscriber: nothing changed"
        detail = {
            "via": "inbound",
            "status": report.failure.status,
            "dsn_action": report.action,
            "evidence": found.kind,
        }
        return bounce_policy.apply_failure(
            session, sub, report.failure, ctx.settings, actor=ACTOR, now=now, detail=detail
        )
    if kind == "complaint" and sub is not None:
        detail = {"feedback_type": reading.feedback_type or "abuse", "evidence": found.kind}
        return bounce_policy.apply_complaint(session, sub, actor=ACTOR, now=now, detail=detail)
    if kind == "unsubscribe" and sub is not None:
        return bounce_policy.apply_unsubscribe(session, sub, actor=ACTOR, now=now)
    return "nothing changed"
