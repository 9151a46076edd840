"""Mailgun's signed webhooks (`POST /webhooks/mailgun`).

The body's `signature` object holds a timestamp, a random token and the hex HMAC-SHA256 of
`timestamp + token` with DIGESTD_MAILGUN_SIGNING_KEY. The timestamp must be within 5
minutes and a token is accepted once. Mailgun signs the timestamp and token only, not the
event beside them: the event's integrity rests on TLS to this endpoint (serve it over
https), and a captured request cannot be sent again (its token is used). `failed` events
are bounces (severity permanent or temporary), `complained` events complaints.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any

from digestd.inbound.webhooks.checks import Refused, Verified, as_dict, load_json, within
from digestd.inbound.webhooks.events import ProviderEvent, bracketed


def verify(signing_key: str, body: bytes, now: datetime) -> Verified:
    """The event, when its signature verifies, its timestamp is fresh and its token new."""
    try:
        payload = load_json(body)
    except ValueError as exc:
        raise Refused(f"not a Mailgun webhook: {exc}") from None
    signed = payload.get("signature") if isinstance(payload, dict) else None
    if not isinstance(signed, dict):
        raise Refused("no Mailgun signature")
    timestamp, token = str(signed.get("timestamp", "")), str(signed.get("token", ""))
    given = str(signed.get("signature", ""))
    if not timestamp or not token or not given:
        raise Refused("incomplete Mailgun signature")
    within(timestamp, now)
    expected = hmac.new(
        signing_key.encode("utf-8"), (timestamp + token).encode("utf-8"), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, given.lower()):
        raise Refused("the Mailgun signature does not verify")
    return Verified(payload, once=[token])


def events(payload: Any) -> list[ProviderEvent]:
    """The bounce or complaint of a verified webhook (`event-data`)."""
    data = payload.get("event-data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        return []
    name = str(data.get("event", ""))
    message = as_dict(data.get("message"))
    headers = as_dict(message.get("headers"))
    ours = bracketed(str(headers.get("message-id") or ""))
    recipient = str(data.get("recipient", ""))
    if name == "complained":
        return [ProviderEvent("complaint", recipient, message_id=ours, feedback_type="abuse")]
    if name != "failed":
        return []
    status = as_dict(data.get("delivery-status"))
    severity = str(data.get("severity", ""))
    code = status.get("code")
    words = str(status.get("message") or status.get("description") or data.get("reason") or "")
    return [
        ProviderEvent(
            kind="bounce",
            recipient=recipient,
            hard={"permanent": True, "temporary": False}.get(severity),
            status=str(status.get("enhanced-code") or ""),
            diagnostic=f"{code} {words}".strip() if code else words,
            message_id=ours,
            provider_id=str(data.get("id") or ""),
        )
    ]
