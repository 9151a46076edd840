"""What a failure does: the one place for the bounce policy.

Used by both ways a failure reaches us: a 5xx reply while sending (synchronous) and a
bounce, complaint or unsubscribe that comes back by mail or webhook (`digestd.inbound`).

Reading a failure (what it means: reason, hard/soft/sender) lives in `digestd.mail.reasons`
(`read_failure`, `status_in`, the tables of codes and phrases); the names stay importable
from here too. The severities and the `Failure` type are shared (`digestd.core.failures`).

Acting on it (`apply_failure`), with DIGESTD_BOUNCE_SOFT_LIMIT / _RESET_DAYS:
- hard → the subscriber is `bounced` at once;
- soft → counted at most once a day; LIMIT days with a soft bounce, with no gap of RESET_DAYS
  or more between them, → `bounced`;
- sender, ours, delayed, success → nothing changes.
A complaint → unsubscribed (way "complaint") and suppressed; mail to the unsubscribe
address → unsubscribed (way "mail"); both idempotent. Suppressed addresses (bounced, or
unsubscribed by a complaint) get nothing more, not even a confirmation mail, until an admin
lifts it (`lift_suppression`, an audit event).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from digestd.core.config import Settings
from digestd.core.failures import Failure, Severity
from digestd.core.models import Subscriber
from digestd.mail.reasons import REASONS, read_failure, status_in
from digestd.subscribers import lifecycle as subs

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
    "lift_suppression",
    "read_failure",
    "status_in",
]

HARD, SOFT, SENDER, NONE = Severity.HARD, Severity.SOFT, Severity.SENDER, Severity.NONE
LIFTED = "subscriber.suppression_lifted"
# Statuses a bounce may move to `bounced` (unsubscribed ones get no mail anyway).
_BOUNCEABLE = ("active", "suspended", "pending")


# ---- acting on it --------------------------------------------------------------------------


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
    if sub.status not in _BOUNCEABLE:
        return f"not counted: subscriber is {sub.status}"
    reason = f"{failure.reason} {failure.status}".strip()
    if failure.severity == HARD:
        subs.bounce(session, sub, actor=actor, now=now, reason=reason, detail=detail)
        return f"bounced ({reason})"
    # Soft: one count a day; a long quiet gap starts the count over.
    last = sub.bounce_last_at
    if last is not None and now.date() == last.date() and sub.bounce_count > 0:
        counted = f"{sub.bounce_count}/{settings.bounce_soft_limit}"
        return f"soft bounce already counted today ({counted})"
    if last is None or now - last >= timedelta(days=settings.bounce_soft_reset_days):
        sub.bounce_count = 0
    sub.bounce_count += 1
    sub.bounce_last_at = now
    session.add(sub)
    if sub.bounce_count >= settings.bounce_soft_limit:
        days = f"soft bounces on {sub.bounce_count} days, last {reason}"
        subs.bounce(session, sub, actor=actor, now=now, reason=days, detail=detail)
        return f"bounced ({days})"
    return f"soft bounce counted ({sub.bounce_count}/{settings.bounce_soft_limit})"


def apply_complaint(
    session: Session, sub: Subscriber, *, actor: str, now: datetime, detail: dict[str, Any]
) -> str:
    """A spam complaint: unsubscribe at once and suppress the address."""
    if sub.status == "bounced":
        return "already bounced (suppressed)"
    changed = subs.complain(
        session, sub, actor=actor, now=now, reason="spam complaint", detail=detail
    )
    return "unsubscribed and suppressed (complaint)" if changed else "already unsubscribed"


def apply_unsubscribe(session: Session, sub: Subscriber, *, actor: str, now: datetime) -> str:
    """Mail to the subscriber's unsubscribe address: unsubscribe (twice is harmless)."""
    changed = subs.unsubscribe(
        session, sub, actor=actor, now=now, way="mail", reason="mail to the unsubscribe address"
    )
    return "unsubscribed" if changed else f"no change (already {sub.status})"


def is_suppressed(session: Session, sub: Subscriber) -> bool:
    """Bounced, or unsubscribed by a complaint and not lifted: no mail of any kind."""
    if sub.status == "bounced":
        return True
    if sub.status != "unsubscribed":
        return False
    event = subs.latest_event(session, sub.id, (subs.STATUS, LIFTED))
    if event is None or event.action == LIFTED:
        return False
    return event.detail.get("way") == "complaint"


def lift_suppression(session: Session, sub: Subscriber, *, actor: str, now: datetime) -> str:
    """An admin lets mail go to a suppressed address again (audit event); says what changed."""
    if sub.status == "bounced":
        subs.lift(session, sub, actor=actor, now=now, reason="lifted by admin")
        sub.bounce_count = 0
        sub.bounce_last_at = None
        session.add(sub)
        return f"{sub.email} is now {sub.status} (bounce lifted)"
    if is_suppressed(session, sub):
        subs.record_event(session, sub.id, LIFTED, actor=actor, now=now, was="complaint")
        return f"{sub.email}: complaint lifted (still unsubscribed; may subscribe again)"
    raise subs.TransitionError(f"{sub.email} is {sub.status} and not suppressed: nothing to lift")


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
        sub = session.get(Subscriber, sub_id)
        if sub is None:
            continue
        failure, reply = failures[sub_id]
        before = sub.status
        apply_failure(
            session, sub, failure, settings, actor=actor, now=now, detail={"reply": reply[:500]}
        )
        if sub.status == "bounced" and before != "bounced":
            newly.append(sub_id)
    return newly
