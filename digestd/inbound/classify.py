"""Telling inbound mail apart: DSN, non-standard bounce, ARF complaint, auto-reply, the rest.

Order matters and is deliberate:
1. an ARF report (RFC 5965) is a complaint (`feedback`);
2. an RFC 3464 DSN is read recipient by recipient: failed / delayed / delivered (`dsn`);
3. an Amazon SES notification forwarded by mail (`ses_mail`);
4. an RFC 3834 auto-reply (Auto-Submitted, X-Autoreply, vacation subjects) is never a bounce;
5. the many non-standard bounces are left to flufl.bounce, then a generic reading
   (`nonstandard`);
6. what is left is a person's mail (unsubscribe, command) or unrecognized: routing decides.

Each question reads the one-pass view of the message (`message.Mail`), never the message
itself: the message is walked once, whichever questions are asked.
"""

from __future__ import annotations

import re

from digestd.inbound.dsn import read_dsn
from digestd.inbound.feedback import is_old_style_complaint, read_feedback
from digestd.inbound.message import MAX_MESSAGE_IDS, Mail, bracketed
from digestd.inbound.nonstandard import flufl_failures, read_flufl, read_generic
from digestd.inbound.parse import Parsed
from digestd.inbound.reading import Reading, RecipientReport
from digestd.inbound.ses_mail import read_ses

__all__ = ["Reading", "RecipientReport", "classify", "is_auto_reply", "looks_like_daemon"]

_DAEMON = re.compile(
    r"mailer-daemon|post_?master|mail ?delivery|mail administrator|mail system|"
    r"bounce|daemon|no-?reply|mailer@|nobody@",
    re.IGNORECASE,
)
_VACATION_SUBJECT = re.compile(
    r"out of (the )?office|vacation|auto(matic)?[- ]?(reply|response|antwort)|autoreply|"
    r"abwesenheit|away from (the )?office|absence|on leave|réponse automatique|"
    r"respuesta automática|risposta automatica|automatisch",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery (status|failure|failed|problem|has failed|notification)|returned mail|"
    r"failure notice|mail delivery|could not be delivered|non-?delivery|returned to sender|"
    r"permanent error|unable to deliver|not delivered|mail failure|delivery error|"
    r"error sending|unzustellbar|fehlgeschlagen|bounce|rejected",
    re.IGNORECASE,
)


def is_auto_reply(mail: Mail | Parsed) -> bool:
    """RFC 3834 and the common non-standard markers of an automatic reply."""
    auto = mail.header("Auto-Submitted").lower()
    if auto and not auto.startswith("no"):
        return True
    if mail.header("X-Autoreply") or mail.header("X-Autorespond"):
        return True
    precedence = mail.header("Precedence").lower()
    if precedence in ("auto_reply", "auto-reply"):
        return True
    return bool(_VACATION_SUBJECT.search(mail.header("Subject")))


def looks_like_daemon(mail: Mail | Parsed, mail_from: str | None) -> bool:
    """Sent by a mail system (null sender, MAILER-DAEMON, postmaster…) rather than a person."""
    if mail_from is not None and mail_from.strip("<> ") == "":
        return True
    return bool(_DAEMON.search(mail.header("From")))


def classify(message: Mail | Parsed, *, mail_from: str | None, person_mail: bool) -> Reading:
    """Read a message; `person_mail`: it went to an address people write to."""
    mail = message if isinstance(message, Mail) else Mail(message)
    if mail.message is None:
        return Reading(kind="")
    if mail.feedback_report is not None:
        return _with_ids(mail, read_feedback(mail))
    for report in mail.delivery_status:
        reading = read_dsn(mail, report)
        if reading is not None:
            return _with_ids(mail, reading)
    ses = read_ses(mail)
    if ses is not None:
        return _with_ids(mail, ses)
    daemon = looks_like_daemon(mail, mail_from)
    subject = mail.header("Subject")
    if is_old_style_complaint(mail):
        return _with_ids(mail, read_feedback(mail))
    bouncy = daemon and bool(_BOUNCE_SUBJECT.search(subject))
    if is_auto_reply(mail) and not bouncy and not (daemon and any(mail.flufl)):
        reading = Reading(
            kind="auto_reply",
            original_message_id=mail.header("In-Reply-To")[:255],
            detector="rfc3834",
        )
        return _with_ids(mail, reading)
    if person_mail and not daemon:
        return Reading(kind="")
    temporary, permanent = flufl_failures(mail)
    if temporary or permanent:
        return _with_ids(mail, read_flufl(mail, temporary, permanent))
    if daemon or _BOUNCE_SUBJECT.search(subject):
        return _with_ids(mail, read_generic(mail))
    return Reading(kind="")


def _with_ids(mail: Mail, reading: Reading) -> Reading:
    """The Message-IDs that may tie this reading to a message of ours (see `evidence`)."""
    found: list[str] = []
    for value in (bracketed(reading.original_message_id), *mail.message_ids):
        if value and value not in found:
            found.append(value)
    reading.message_ids = found[:MAX_MESSAGE_IDS]
    return reading
