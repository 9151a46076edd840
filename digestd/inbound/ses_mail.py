"""Amazon SES notifications (bounce, complaint, delivery) that arrive by mail as JSON.

SNS email subscriptions forward SES's JSON as the text of a message; SNS folds long lines
as "!" + newline + space, undone here. (The signed HTTP notifications are the webhooks'.)
"""

from __future__ import annotations

import json
import re
from typing import Any

from digestd.core.failures import Failure
from digestd.inbound.message import Mail
from digestd.inbound.parse import one_line
from digestd.inbound.reading import Reading, RecipientReport, capped
from digestd.mail.reasons import read_failure, status_in


def _json_of(mail: Mail) -> dict[str, Any] | None:
    text = mail.human_text
    start = text.find("{")
    if start < 0 or ('"notificationType"' not in text and '"eventType"' not in text):
        return None
    try:
        data, _ = json.JSONDecoder().raw_decode(re.sub(r"!\r?\n ", "", text[start:]))
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("Message"), str):  # the SNS envelope around the SES JSON
        try:
            data = json.loads(data["Message"])
        except ValueError:
            return None
    return data if isinstance(data, dict) else None


def read_ses(mail: Mail) -> Reading | None:
    """An SES notification read as a bounce, complaint or delivery report; None otherwise."""
    data = _json_of(mail)
    if data is None:
        return None
    kind = str(data.get("notificationType") or data.get("eventType") or "").lower()
    sent: dict[str, Any] = data["mail"] if isinstance(data.get("mail"), dict) else {}
    mid = ""
    for header in sent.get("headers") or []:
        if isinstance(header, dict) and str(header.get("name", "")).lower() == "message-id":
            mid = str(header.get("value", ""))
    to = [str(a) for a in sent.get("destination") or []][:100]
    if kind == "complaint":
        body = data.get("complaint") or {}
        who = [str(r.get("emailAddress", "")) for r in body.get("complainedRecipients") or []]
        recipients, more = capped(
            [RecipientReport(a, "", failure=Failure("none", "feedback")) for a in who]
        )
        return Reading(
            kind="complaint",
            recipients=recipients,
            original_message_id=mid,
            original_to=to,
            feedback_type=str(body.get("complaintFeedbackType") or "abuse")[:32],
            detector="ses",
            more_recipients=more,
        )
    if kind not in ("bounce", "delivery"):
        return None
    body = data.get(kind) or {}
    found = []
    if kind == "delivery":
        for address in body.get("recipients") or []:
            delivered = read_failure("", "", "delivered")
            found.append(RecipientReport(str(address), "delivered", failure=delivered))
    for r in body.get("bouncedRecipients") or []:
        status = status_in(str(r.get("status", "")))
        transient = body.get("bounceType") == "Transient" and not status.startswith("5")
        action = "delayed" if transient else "failed"
        diagnostic = one_line(str(r.get("diagnosticCode", "")), 800)
        failure = read_failure(status, diagnostic, action)
        found.append(
            RecipientReport(str(r.get("emailAddress", "")), action, status, diagnostic, failure)
        )
    if not found:
        return None
    recipients, more = capped(found)
    return Reading(
        kind="bounce" if kind == "bounce" else "delivery_report",
        recipients=recipients,
        original_message_id=mid,
        original_to=to,
        detector="ses",
        more_recipients=more,
    )
