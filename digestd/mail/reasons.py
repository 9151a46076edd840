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
    "filtered": SOFT,
    "greylisted": SOFT,
    "mailererror": SOFT,
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
        # A rate limit is never about the address, whatever else the reply says.
        ("toomanyconn", r"frequency limit|rate limit|throttl|too many (connections|messages)"),
        ("greylisted", r"gr[ae]y-?list"),
        (
            "norelaying",
            r"relay(ing)? (access )?(denied|not permitted|prohibited)|unable to relay"
            r"|we do not relay|relay not allowed",
        ),
        (
            "securityerror",
            # (A mention of the DKIM-Signature header is not a DKIM failure.)
            r"\b(spf|dkim|dmarc)\b(?!-signature)|authenticat|not authori[sz]ed to send",
        ),
        (
            "spamdetected",
            # ofr_506: Orange's code for content it reads as spam (its postmaster's list).
            r"\bspam\b|\bspamm|junk mail|bulk mail|unsolicited|\bofr_506\b",
        ),
        ("virusdetected", r"\bvirus|malware"),
        (
            "blocked",
            r"block(ed|list)|black ?list|\brbl\b|spamhaus|reputation|"
            r"client host .* rejected|too many complaints|access denied|my name was rejected|"
            r"after (initial connection|connection|helo|ehlo)|greeting|\bptr\b|reverse dns|"
            r"rdns|unwanted (messages|mail)|service refused|service refus[eé]",
        ),
        (
            "rejected",
            r"sender (address )?(rejected|denied|verify failed)|domain of sender|"
            r"after mail from"
            r"|sender domain|from address|\bfrom:? ?domain is invalid|provide a valid from",
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
            r"is not a known user|not our customer|no valid recipients?",
        ),
        (
            "mailboxfull",
            r"mailbox (is )?full|over ?quota|quota|exceeded storage|"
            r"insufficient (disk|storage|space)|mail ?folder is full|too much mail|storage",
        ),
        ("suspend", r"disabled|suspended|inactive|deactivated|not active|expired account"),
        ("mesgtoobig", r"too (large|big)|size (limit )?exceed|exceeds .*size"),
        ("toomanyconn", r"try again later"),
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
# The remote server's own enhanced status: right after its reply code ("550 5.2.2",
# "550-5.7.1", "550-'5.7.1", "554 #5.1.0"), wherever the reporting MTA quotes it.
_REMOTE_STATUS = re.compile(r"\b[245]\d\d[ -]['\"(]?#?([245])\.(\d{1,3})\.(\d{1,3})\b")
# The SMTP command a refusal answered, as MTAs write it (Postfix, Exim, Sendmail,
# DragonFly, mfilter, Orange); the first found wins.
_STAGES: list[tuple[str, re.Pattern[str]]] = [
    (stage, re.compile(p, re.IGNORECASE))
    for stage, p in [
        (
            "DATA",
            r"in reply to (end of )?data command|after (end of )?data\b|smtp command:? data\b|"
            r"our final data|for text command|in reply to end of data",
        ),
        ("RCPT", r"in reply to rcpt to command|after rcpt to|our rcpt to|smtp command:? rcpt"),
        ("MAIL", r"in reply to mail from command|after mail from|our mail from"),
        (
            "CONN",
            r"after (initial connection|connection|helo|ehlo)|in reply to (helo|ehlo)|"
            r"my name was rejected|not accepting connections|our helo|our ehlo",
        ),
    ]
]
# (Not anchored to a line: a diagnostic read from a bounce's text is on one line.)
_TRANSCRIPT_REFUSAL = re.compile(r"(?:^|\s)<<< 5\d\d\b", re.MULTILINE)
_TRANSCRIPT_COMMAND = re.compile(r"(?:^|\s)>>> ([a-z]+)", re.IGNORECASE | re.MULTILINE)
_TRANSCRIPT_TALK = re.compile(r"while talking to", re.IGNORECASE)
# A refusal the recipient's own filter gave (the address exists; the message was refused).
_FILTERED = re.compile(
    r"recipient preferences|domain filter|address filter|recipient.{0,20} filter|filtered",
    re.IGNORECASE,
)
# The local delivery program failed (procmail, a pipe): the recipient's system, not the address.
_MAILER = re.compile(r"^x-unix;|mailer error|command (died|failed)|local delivery failed", re.I)
# Reasons that are never about a bad address, whatever status wraps them (issue 25: a full
# mailbox, a quota, a greylist or a rate limit is never hard).
NEVER_HARD = ("mailboxfull", "toomanyconn", "greylisted")


def status_in(text: str) -> str:
    """The first enhanced status code (e.g. 5.1.1) in a reply or diagnostic, or ''."""
    match = _STATUS.search(text or "")
    return ".".join(match.groups()) if match else ""


def remote_status(text: str) -> str:
    """The remote server's own enhanced status in a diagnostic (the code right after its reply
    code), or ''. "5.1.0 - Unknown address error 550-'5.7.1 … Access denied'" → 5.7.1."""
    match = _REMOTE_STATUS.search(text or "")
    return ".".join(match.groups()) if match else ""


def stage_of(text: str) -> str:
    """The SMTP command a refusal answered (CONN, MAIL, RCPT, DATA), or '' when not said.

    A Sendmail transcript says it as `>>> DATA` then `<<< 550 …` (the first permanent
    refusal is read); one with no command before it in its "while talking to" block came at
    the connection (a 554 greeting)."""
    text = text or ""
    for stage, pattern in _STAGES:
        if pattern.search(text):
            return stage
    refusal = _TRANSCRIPT_REFUSAL.search(text)
    if refusal is None:
        return ""
    before = text[: refusal.start()]
    talk = list(_TRANSCRIPT_TALK.finditer(before))
    block = before[talk[-1].end() :] if talk else before
    commands = _TRANSCRIPT_COMMAND.findall(block)
    if not commands:
        return "CONN" if talk else ""
    command = commands[-1].upper()
    return {"EHLO": "CONN", "HELO": "CONN", "RCPT": "RCPT", "MAIL": "MAIL"}.get(
        command, "DATA" if command in ("DATA", ".") else ""
    )


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


def _chosen(status: str, text: str) -> tuple[str, str]:
    """The most specific status and the words to read: the remote server's own reply inside
    the diagnostic (its status, and its words from there on) over the reporting MTA's Status
    field and wrapper text; the field over a code merely mentioned in the text, unless the
    field is generic (X.0.0) and the text's code is of the same class."""
    remote = _REMOTE_STATUS.search(text)
    if remote:
        return ".".join(remote.groups()), text[remote.start() :]
    said = status_in(text)
    if not status or (status.endswith(".0.0") and said[:1] == status[:1]):
        return said or status, text
    return status, text


def read_failure(
    status: str = "", diagnostic: str = "", action: str = "failed", *, context: str = ""
) -> Failure:
    """Read one recipient's failure from its status code, diagnostic text and DSN action.

    Most specific evidence first: the remote server's own reply and enhanced status inside
    the diagnostic win over the reporting MTA's generic wrapper and Status field. A specific
    status code then decides, except where the words are more precise:
    - a generic status (X.Y.0) yields to a reason the words name;
    - an address or mailbox status (X.1.0, X.1.3, X.2.x) whose words say the sender was
      blocked or rejected is about the sender; a mailbox or policy status (X.2.x, X.7.0,
      X.7.1) whose words say the user does not exist is about the address (servers use
      5.2.x and 5.7.1 loosely for both);
    - a full mailbox, a quota, a greylist or a rate limit is never hard.
    Where the refusal came (`stage_of` the diagnostic, else `context`: the report's text with
    the session transcript) matters too: a refusal at the connection is about us (blocked);
    "user unknown" said after DATA, when the address was accepted at RCPT, or by a status
    about the mailbox (X.2.0), is the recipient's filter refusing the message (filtered,
    soft). The local delivery program failing (x-unix) is a mailer error (soft).
    """
    action = (action or "failed").strip().lower()
    text = " ".join((diagnostic or "").split())[:4000]
    stage = stage_of(text) or stage_of(context[:8000])
    status, text = _chosen((status or "").strip(), text)
    if action in ("delivered", "relayed", "expanded"):
        return Failure(NONE, "delivered", status)
    if action == "delayed":
        return Failure(NONE, "delayed", status)
    reply = _REPLY.match(text)
    klass = status[:1] or (reply.group(1) if reply else "")
    detail = status.split(".", 1)[1] if status.count(".") == 2 else ""
    reason = _reason(detail, text)
    if _MAILER.search(text):
        reason = "mailererror"
    elif stage in ("CONN", "MAIL") and REASONS.get(reason, SOFT) != SENDER:
        # Refused before any recipient was named: about us, never about the address.
        reason = "blocked" if stage == "CONN" else "rejected"
    elif reason == "userunknown" and _filtered(detail, stage, text):
        reason = "filtered"
    severity = REASONS.get(reason, SOFT)
    if severity == HARD and klass == "4":
        severity = SOFT  # a temporary failure never says the address is bad
    return Failure(severity, reason, status)


def _filtered(detail: str, stage: str, text: str) -> bool:
    """Whether "user unknown" is the recipient's filter refusing the message: its words say
    so, or it came after DATA (the address was accepted at RCPT) or with a status about the
    mailbox (X.2.0), not about the address (X.1.x)."""
    if _FILTERED.search(text):
        return True
    return not detail.startswith("1.") and (stage == "DATA" or detail == "2.0")


def _reason(detail: str, text: str) -> str:
    """The reason from the status's subject.detail and the words (see read_failure)."""
    specific = _BY_STATUS.get(detail, "")
    said = _by_text(text)
    if said in NEVER_HARD:
        return said
    hard, sender = _said(text, HARD), _said(text, SENDER)
    if specific and detail in ("1.0", "1.3") and sender:
        return sender
    if detail in ("2.0", "2.1") and (hard or sender):
        return hard or sender
    if specific and detail in ("7.0", "7.1") and hard:
        return hard
    if specific == "blocked" and sender:
        return sender  # 5.7.1 says "blocked"; the words may say more precisely why
    if specific and detail.endswith(".0") and said:
        return said  # a generic status: the words are more specific
    return specific or said or "undefined"
