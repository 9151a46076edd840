"""What a failure means and what it does: the one place for the bounce policy.

Used by both ways a failure reaches us: a 5xx reply while sending (synchronous) and a
bounce, complaint or unsubscribe that comes back by mail (`digestd.inbound`).

Reading a failure (`read_failure`): the enhanced status code (RFC 3463) where it is
specific, the diagnostic text where it is not. No library reads reasons (flufl.bounce only
finds the failed addresses), so the phrases below are ours, modelled on Sisimai's reasons.
- hard: the address itself is bad (user unknown, no such domain, moved, null MX);
- soft: it may work later or for another message (mailbox full, expired, disabled, network);
- sender: the failure is about us, not the address (blocked, spam, policy, authentication,
  relaying: mostly 5.7.x). It never counts against a subscriber; it is recorded and shown.
The severities and the `Failure` type are shared (`digestd.core.failures`); a refusal while
sending is read into one by `digestd.delivery.failures.read_smtp_reply`, with this reading.

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

import re
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from digestd.core.config import Settings
from digestd.core.failures import Failure, Severity
from digestd.core.models import Subscriber
from digestd.subscribers import lifecycle as subs

HARD, SOFT, SENDER, NONE = Severity.HARD, Severity.SOFT, Severity.SENDER, Severity.NONE
LIFTED = "subscriber.suppression_lifted"
# Statuses a bounce may move to `bounced` (unsubscribed ones get no mail anyway).
_BOUNCEABLE = ("active", "suspended", "pending")

# reason -> severity
REASONS = {
    "userunknown": HARD,
    "hostunknown": HARD,
    "hasmoved": HARD,
    "notaccept": HARD,
    "mailboxfull": SOFT,
    "suspend": SOFT,
    "expired": SOFT,
    "networkerror": SOFT,
    "systemerror": SOFT,
    "mesgtoobig": SOFT,
    "contenterror": SOFT,
    "toomanyconn": SOFT,
    "undefined": SOFT,
    "blocked": SENDER,
    "spamdetected": SENDER,
    "policyviolation": SENDER,
    "securityerror": SENDER,
    "rejected": SENDER,
    "norelaying": SENDER,
    "virusdetected": SENDER,
    "delayed": NONE,
    "delivered": NONE,
}

# Enhanced status codes (RFC 3463 subject.detail) that name a reason by themselves.
_BY_STATUS = {
    "1.1": "userunknown",
    "1.0": "userunknown",
    "1.2": "hostunknown",
    "1.3": "userunknown",
    "1.6": "hasmoved",
    "1.7": "rejected",
    "1.8": "rejected",
    "1.10": "notaccept",
    "2.1": "suspend",
    "2.2": "mailboxfull",
    "2.3": "mesgtoobig",
    "3.1": "mailboxfull",
    "3.4": "mesgtoobig",
    "4.7": "expired",
    "5.3": "toomanyconn",
    "6.0": "contenterror",
    "7.1": "blocked",
    "7.0": "blocked",
    "7.7": "securityerror",
    "7.8": "securityerror",
    "7.9": "securityerror",
    "7.23": "securityerror",
    "7.24": "securityerror",
    "7.25": "securityerror",
    "7.26": "securityerror",
    "7.27": "notaccept",
    "7.13": "suspend",
    "7.28": "spamdetected",
}

# Ordered (first match wins): what is about the sender, then the address, then the rest.
_PHRASES: list[tuple[str, re.Pattern[str]]] = [
    (r, re.compile(p, re.IGNORECASE))
    for r, p in [
        ("userunknown", r"recipient address rejected: (user unknown|access denied)"),
        (
            "norelaying",
            r"relay(ing)? (access )?(denied|not permitted|prohibited)|unable to relay"
            r"|we do not relay|relay not allowed",
        ),
        ("securityerror", r"\b(spf|dkim|dmarc)\b|authenticat|not authori[sz]ed to send"),
        ("spamdetected", r"\bspam\b|\bspamm|junk mail|bulk mail|unsolicited"),
        ("virusdetected", r"\bvirus|malware"),
        (
            "blocked",
            r"block(ed|list)|black ?list|\brbl\b|spamhaus|reputation|"
            r"client host .* rejected|too many complaints|access denied|my name was rejected|"
            r"after (initial connection|connection|helo|ehlo)|greeting|\bptr\b|reverse dns|"
            r"rdns",
        ),
        (
            "rejected",
            r"sender (address )?(rejected|denied|verify failed)|domain of sender|"
            r"after mail from"
            r"|sender domain|from address",
        ),
        ("policyviolation", r"\bpolicy|prohibited|not allowed"),
        (
            "hostunknown",
            r"host (or domain name )?(unknown|not found)|domain (not found|does not "
            r"exist|unknown)|no such domain|name or service not known|unrouteable mail domain|"
            r"nxdomain|no mx|unknown host|\bdomain .* does not accept mail",
        ),
        ("hasmoved", r"has moved|address (has )?changed|no longer (in use|valid at)"),
        (
            "userunknown",
            r"user ?(name )?unknown|unknown (user|recipient|local|address|mailbox)|"
            r"no such (user|mailbox|recipient|address|account|person)|does ?n[o']t exist|"
            r"mailbox (not found|unavailable|does not exist|invalid)|(user|recipient|address) not "
            r"found|not a valid (mailbox|recipient|user)|invalid (recipient|mailbox|address|user)|"
            r"unrouteable address|recipient unknown|addressee unknown|not listed in|"
            r"no mailbox|bad destination mailbox|user doesn't have|no longer available|"
            r"account (is )?(not found|unknown|does not)|unknown or illegal alias|"
            r"is not a known user|not our customer",
        ),
        (
            "mailboxfull",
            r"mailbox (is )?full|over ?quota|quota|exceeded storage|"
            r"insufficient (disk|storage|space)|mail ?folder is full|too much mail|storage",
        ),
        ("suspend", r"disabled|suspended|inactive|deactivated|not active|expired account"),
        ("mesgtoobig", r"too (large|big)|size (limit )?exceed|exceeds .*size"),
        ("toomanyconn", r"too many (connections|messages)|rate limit|throttl|try again later"),
        (
            "expired",
            r"retry (time|timeout)|delivery time expired|message expired|timed? ?out|"
            r"giving up|could not be delivered for|expired",
        ),
        ("networkerror", r"connection (refused|reset|timed)|network|unreachable|dns"),
        ("systemerror", r"system (error|config)|local error|internal error|loop"),
    ]
]

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_REPLY = re.compile(r"^\s*([245])\d\d\b")


def status_in(text: str) -> str:
    """The first enhanced status code (e.g. 5.1.1) in a reply or diagnostic, or ''."""
    match = _STATUS.search(text or "")
    return ".".join(match.groups()) if match else ""


def _by_text(text: str) -> str:
    for reason, pattern in _PHRASES:
        if pattern.search(text):
            return reason
    return ""


def _said(text: str, severity: str) -> str:
    for reason, pattern in _PHRASES:
        if REASONS[reason] == severity and pattern.search(text):
            return reason
    return ""


def read_failure(status: str = "", diagnostic: str = "", action: str = "failed") -> Failure:
    """Read one recipient's failure from its status code, diagnostic text and DSN action.

    A specific status code decides, except where the text is more precise: a generic
    address status (X.1.0, X.1.3) or a mailbox status (X.2.x) whose text says the sender was
    blocked or rejected, and a mailbox or policy status (X.2.x, X.7.0, X.7.1) whose text says
    the user does not exist (servers use 5.2.x and 5.7.1 loosely for both).
    """
    action = (action or "failed").strip().lower()
    status = (status or "").strip()
    said_status = status_in(diagnostic)
    if not status or (status.endswith(".0.0") and said_status[:1] == status[:1]):
        status = said_status or status  # the diagnostic's code is the more specific one
    if action in ("delivered", "relayed", "expanded"):
        return Failure(NONE, "delivered", status)
    if action == "delayed":
        return Failure(NONE, "delayed", status)
    text = " ".join((diagnostic or "").split())[:4000]
    reply = _REPLY.match(text)
    klass = status[:1] or (reply.group(1) if reply else "")
    detail = status.split(".", 1)[1] if status.count(".") == 2 else ""
    specific = _BY_STATUS.get(detail, "")
    hard, sender = _said(text, HARD), _said(text, SENDER)
    if specific and detail in ("1.0", "1.3") and sender:
        reason = sender
    elif specific and detail in ("2.0", "2.1") and (hard or sender):
        reason = hard or sender
    elif specific and detail in ("7.0", "7.1") and hard:
        reason = hard
    elif specific in ("blocked",) and sender:
        reason = sender  # 5.7.1 says "blocked"; the text may say more precisely why
    elif specific:
        reason = specific
    else:
        reason = _by_text(text) or "undefined"
    severity = REASONS.get(reason, SOFT)
    if severity == HARD and klass == "4":
        severity = SOFT  # a temporary failure never says the address is bad
    return Failure(severity, reason, status)


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
