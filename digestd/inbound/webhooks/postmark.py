"""Postmark's bounce and spam-complaint webhooks (`POST /webhooks/postmark`).

Postmark does not sign; its webhook URL carries HTTP basic auth, compared in constant time
with DIGESTD_POSTMARK_AUTH (`user:password`). A record (RecordType and ID) is accepted
once. Postmark reports its own MessageID, not ours: the evidence is the recipient.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from typing import Any

from digestd.inbound.webhooks.checks import Refused, Verified, load_json
from digestd.inbound.webhooks.events import ProviderEvent

# Postmark's bounce types: https://postmarkapp.com/developer/api/bounce-api#bounce-types
_HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated", "Unknown"}
_SOFT = {"SoftBounce", "Transient", "DnsError", "AutoResponder", "MailFrontier"}


def verify(auth: str, headers: Mapping[str, str], body: bytes) -> Verified:
    """The record, when the basic auth matches."""
    given = headers.get("authorization", "")
    scheme, _, encoded = given.partition(" ")
    try:
        credentials = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        credentials = b""
    if scheme.lower() != "basic" or not hmac.compare_digest(credentials, auth.encode("utf-8")):
        raise Refused("no or wrong Postmark basic auth")
    try:
        payload = load_json(body)
    except ValueError as exc:
        raise Refused(f"authenticated, but {exc}") from None
    once = []
    if isinstance(payload, dict) and payload.get("ID") is not None:
        once.append(f"{payload.get('RecordType', '')}:{payload.get('ID')}")
    return Verified(payload, once=once)


def events(payload: Any) -> list[ProviderEvent]:
    """A Bounce record (hard/soft by its Type) or a SpamComplaint record."""
    if not isinstance(payload, dict):
        return []
    record = str(payload.get("RecordType", ""))
    kind = str(payload.get("Type", ""))
    recipient = str(payload.get("Email", ""))
    theirs = str(payload.get("MessageID") or "")
    if record == "SpamComplaint" or kind == "SpamComplaint":
        return [ProviderEvent("complaint", recipient, provider_id=theirs, feedback_type="abuse")]
    if record != "Bounce":
        return []
    hard = True if kind in _HARD else False if kind in _SOFT else None
    return [
        ProviderEvent(
            kind="bounce",
            recipient=recipient,
            hard=hard,
            diagnostic=str(payload.get("Details") or payload.get("Description") or kind),
            provider_id=theirs,
        )
    ]
