"""What a mail failure means: its reason and severity, read from status codes and words.

Both ways a failure reaches digestd read it here: a DSN (or other bounce, or a provider's
event) that comes back (`digestd.inbound`), and a server's refusal while sending
(`digestd.delivery.failures.read_smtp_reply`). What it then does to a subscriber is the
bounce policy's (`digestd.subscribers.bounce_policy.apply_failure`).

The enhanced status code (RFC 3463) where it is specific, the diagnostic text where it is
not. No library reads reasons (flufl.bounce only finds the failed addresses), so the phrases
below are ours, modelled on Sisimai's reasons (the reference bounce classifier):
- hard: the address itself is bad (user unknown, no such domain, moved, null MX);
- soft: it may work later or for another message (mailbox full, expired, disabled, network);
- sender: the failure is about us, not the address (blocked, spam, policy, authentication,
  relaying: mostly 5.7.x). It never counts against a subscriber; it is recorded and shown.
"""

from __future__ import annotations

import re

from digestd.core.failures import Failure, Severity

HARD, SOFT, SENDER, NONE = Severity.HARD, Severity.SOFT, Severity.SENDER, Severity.NONE

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
