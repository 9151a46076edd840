"""Complaints: RFC 5965 feedback reports (ARF) and the feedback loops that predate ARF."""

from __future__ import annotations

import re

from digestd.core.failures import Failure
from digestd.inbound.addresses import addresses_in
from digestd.inbound.dsn import strip_type
from digestd.inbound.message import Mail
from digestd.inbound.reading import Reading, RecipientReport, capped

_COMPLAINT_SUBJECT = re.compile(r"complaint about message|abuse report|spam report", re.I)


def is_old_style_complaint(mail: Mail) -> bool:
    """A feedback loop that predates ARF (e.g. Hotmail's): a complaint subject and the
    complained-of message attached."""
    return bool(_COMPLAINT_SUBJECT.search(mail.header("Subject")) and mail.returned.to)


def read_feedback(mail: Mail) -> Reading:
    """Who complained about which message (its Message-ID is what ties it to a delivery)."""
    fields = mail.feedback_report or {}
    returned = mail.returned
    rcpts = [strip_type(fields["original-rcpt-to"])] if fields.get("original-rcpt-to") else []
    rcpts = rcpts or addresses_in(list(returned.to))
    recipients, more = capped(
        [RecipientReport(a, action="", failure=Failure("none", "feedback")) for a in rcpts]
    )
    return Reading(
        kind="complaint",
        recipients=recipients,
        original_message_id=returned.message_id,
        original_to=list(returned.to),
        feedback_type=fields.get("feedback-type", "abuse").lower()[:32],
        detector="arf",
        more_recipients=more,
    )
