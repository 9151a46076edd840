"""What a failure does: the one place for the bounce policy.

Used by both ways a failure reaches us: a 5xx reply while sending (synchronous) and a
bounce, complaint or unsubscribe that comes back by mail or webhook (`digestd.inbound`).

Reading a failure (what it means: reason, hard/soft/sender) lives in `digestd.mail.reasons`
(`read_failure`, `status_in`, the tables of codes and phrases); the names stay importable
from here too. The severities and the `Failure` type are shared (`digestd.core.failures`).

Acting on it (`apply_failure`, through `lifecycle`), with DIGESTD_BOUNCE_SOFT_LIMIT /
_RESET_DAYS:
- hard → the subscriber is `bounced` at once (and suppressed);
- soft → counted at most once a day; LIMIT days with a soft bounce, with no gap of RESET_DAYS
  or more between them, → `bounced`;
- sender, ours, delayed, success → nothing changes; nor does anything for an address that
  gets no mail (bounced, unsubscribed: the table's UNCHANGED for a bounce).
A complaint → unsubscribed (way "complaint") and suppressed; mail to the unsubscribe
address → unsubscribed (way "mail"); both idempotent. Suppressed addresses (the subscriber's
`suppressed` column) get nothing more, not even a confirmation mail, until an admin lifts it
(`digestd.subscribers.manage.lift`, an audit event).

These are the bounce, complaint and mail-unsubscribe use cases. Unlike the others they run
in the caller's transaction, by design: the evidence (the inbound record, or the delivery's
outcome in the recorder's group commit) and what it did to the subscriber are committed
together or not at all, so a message is never recorded without its effect nor its effect
applied twice after a crash.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from digestd.core.config import Settings
from digestd.core.failures import Failure, Severity
from digestd.core.models import Subscriber
from digestd.core.statuses import UNCHANGED, Move, SubscriberStatus
from digestd.mail.reasons import REASONS, read_failure, status_in
from digestd.subscribers import lifecycle, store
from digestd.subscribers.lifecycle import LIFTED

# The reading half, re-exported: `digestd.mail.reasons` is where it lives.
__all__ = [
    "HARD",
    "LIFTED",
    "NONE",
    "REASONS",
    "SENDER",
    "SOFT",
    "apply_complaint",
    "apply_failure",
    "apply_send_failures",
    "apply_unsubscribe",
    "is_suppressed",
    "read_failure",
    "status_in",
]

HARD, SOFT, SENDER, NONE = Severity.HARD, Severity.SOFT, Severity.SENDER, Severity.NONE
S = SubscriberStatus


def _count_soft(sub: Subscriber, settings: Settings, now: datetime) -> str:
    """Count a soft bounce (at most once a day; a long quiet gap starts the count over);
    returns what it did, or '' when the address has reached the limit."""
    last = sub.bounce_last_at
    if last is not None and now.date() == last.date() and sub.bounce_count > 0:
        counted = f"{sub.bounce_count}/{settings.bounce_soft_limit}"
        return f"soft bounce already counted today ({counted})"
    if last is None or now - last >= timedelta(days=settings.bounce_soft_reset_days):
        sub.bounce_count = 0
    sub.bounce_count += 1
    sub.bounce_last_at = now
    if sub.bounce_count >= settings.bounce_soft_limit:
        return ""
    return f"soft bounce counted ({sub.bounce_count}/{settings.bounce_soft_limit})"


def apply_failure(
    session: Session,
    sub: Subscriber,
    failure: Failure,
    settings: Settings,
    *,
    actor: str,
    now: datetime,
    detail: dict[str, Any] | None = None,
) -> str:
    """Apply one failure to a subscriber; returns what it did, in a few words (for the record)."""
    if failure.severity == SENDER:
        return f"not counted: {failure.reason} is about the sender, not the address"
    if failure.severity == Severity.OURS:
        return f"not counted: {failure.reason} is our own failure, not the address's"
    if failure.severity == NONE:
        return "not counted"
    if S(sub.status) in UNCHANGED[Move.BOUNCE]:
        # Bounced or unsubscribed: no mail goes there, so there is nothing to count.
        return f"not counted: subscriber is {sub.status}"
    reason = f"{failure.reason} {failure.status}".strip()
    if failure.severity == HARD:
        change = lifecycle.bounce(sub, now=now, reason=reason, detail=detail)
        store.save(session, sub, [change], actor=actor, now=now)
        return f"bounced ({reason})"
    said = _count_soft(sub, settings, now)
    if said:
        store.save(session, sub, [], actor=actor, now=now)
        return said
    days = f"soft bounces on {sub.bounce_count} days, last {reason}"
    change = lifecycle.bounce(sub, now=now, reason=days, detail=detail)
    store.save(session, sub, [change], actor=actor, now=now)
    return f"bounced ({days})"


def apply_complaint(
    session: Session, sub: Subscriber, *, actor: str, now: datetime, detail: dict[str, Any]
) -> str:
    """A spam complaint: unsubscribe at once and suppress the address."""
    if sub.status == S.BOUNCED:
        return "already bounced (suppressed)"
    change = lifecycle.complain(sub, now=now, reason="spam complaint", detail=detail)
    store.save(session, sub, [change], actor=actor, now=now)
    return "unsubscribed and suppressed (complaint)" if change else "already unsubscribed"


def apply_unsubscribe(session: Session, sub: Subscriber, *, actor: str, now: datetime) -> str:
    """Mail to the subscriber's unsubscribe address: unsubscribe (twice is harmless)."""
    change = lifecycle.unsubscribe(
        sub, now=now, way="mail", reason="mail to the unsubscribe address"
    )
    store.save(session, sub, [change], actor=actor, now=now)
    return "unsubscribed" if change else f"no change (already {sub.status})"


def is_suppressed(session: Session, sub: Subscriber) -> bool:
    """Bounced, or unsubscribed by a complaint and not lifted: no mail of any kind (the
    `suppressed` column; `session` is no longer needed and kept for callers)."""
    return bool(sub.suppressed) or sub.status == S.BOUNCED


def apply_send_failures(
    session: Session,
    failures: dict[int, tuple[Failure, str]],
    settings: Settings,
    *,
    actor: str,
    now: datetime,
) -> list[int]:
    """The synchronous side: refusals while sending (subscriber id → the failure as read
    where it happened, with the server's words for the audit event), applied like bounces
    that come back by mail. Returns the ids of subscribers this marked bounced."""
    newly: list[int] = []
    for sub_id in sorted(failures):
        sub = store.get(session, sub_id)
        if sub is None:
            continue
        failure, reply = failures[sub_id]
        before = sub.status
        apply_failure(
            session, sub, failure, settings, actor=actor, now=now, detail={"reply": reply[:500]}
        )
        if sub.status == S.BOUNCED and before != S.BOUNCED:
            newly.append(sub_id)
    return newly
