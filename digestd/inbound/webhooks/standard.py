"""Standard Webhooks (`POST /webhooks/standard`): Resend and other senders that follow
standardwebhooks.com.

Headers `webhook-id`, `webhook-timestamp` and `webhook-signature` (`v1,<base64>` entries);
the signature is HMAC-SHA256 of `id.timestamp.body` with the secret DIGESTD_WEBHOOK_SECRET
(`whsec_…`), computed by the `standardwebhooks` package. The timestamp is checked against
digestd's clock (within 5 minutes), and an id is accepted once. Events in Resend's shape:
`email.bounced` (bounce.type Permanent or Transient) and `email.complained`.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from standardwebhooks.webhooks import Webhook

from digestd.inbound.webhooks.checks import Refused, Verified, as_dict, load_json, within
from digestd.inbound.webhooks.events import ProviderEvent, bracketed


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: datetime) -> Verified:
    """The event, when a v1 signature verifies, the timestamp is fresh and the id new."""
    msg_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    given = headers.get("webhook-signature", "")
    if not msg_id or not timestamp or not given:
        raise Refused("missing webhook-id, webhook-timestamp or webhook-signature")
    when = within(timestamp, now)
    expected = Webhook(secret).sign(msg_id, when, body).encode("ascii")
    if not any(hmac.compare_digest(expected, s.encode("ascii", "replace")) for s in given.split()):
        raise Refused("no webhook-signature verifies")
    try:
        payload = load_json(body)
    except ValueError as exc:
        raise Refused(f"signed, but {exc}") from None
    return Verified(payload, once=[msg_id])


def events(payload: Any) -> list[ProviderEvent]:
    """The bounce or complaint of a verified event (`type` and `data`)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        return []
    name, data = str(payload.get("type", "")), payload["data"]
    recipients = data.get("to") if isinstance(data.get("to"), list) else [data.get("to")]
    recipients = [str(r) for r in recipients if isinstance(r, str)]
    headers = data.get("headers") if isinstance(data.get("headers"), list) else []
    ours = ""
    for h in headers:
        if isinstance(h, dict) and str(h.get("name", "")).lower() == "message-id":
            ours = bracketed(str(h.get("value", "")))
    theirs = str(data.get("email_id") or "")
    if name == "email.complained":
        return [
            ProviderEvent("complaint", r, message_id=ours, provider_id=theirs) for r in recipients
        ]
    if name != "email.bounced":
        return []
    bounce = as_dict(data.get("bounce"))
    hard = {"Permanent": True, "Transient": False}.get(str(bounce.get("type", "")))
    words = str(bounce.get("message") or bounce.get("subType") or "")
    return [
        ProviderEvent("bounce", r, hard=hard, diagnostic=words, message_id=ours, provider_id=theirs)
        for r in recipients
    ]
