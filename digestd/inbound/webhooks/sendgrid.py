"""SendGrid's signed event webhook (`POST /webhooks/sendgrid`).

SendGrid signs `timestamp + body` with ECDSA P-256 / SHA-256; the headers carry the base64
DER signature and the timestamp, DIGESTD_SENDGRID_PUBLIC_KEY is the base64 verification key
SendGrid shows. The timestamp must be within 5 minutes, and a signature is accepted once
(a replay within the window is refused too). The body is a JSON array of events; bounces,
drops and blocks are bounces, `spamreport` a complaint, everything else is not read.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from digestd.inbound.webhooks.checks import Refused, Verified, load_json, within
from digestd.inbound.webhooks.events import ProviderEvent, bracketed

SIGNATURE = "x-twilio-email-event-webhook-signature"
TIMESTAMP = "x-twilio-email-event-webhook-timestamp"


def verify(public_key: str, headers: Mapping[str, str], body: bytes, now: datetime) -> Verified:
    """The events, when the signature verifies and the timestamp is fresh."""
    signature, timestamp = headers.get(SIGNATURE, ""), headers.get(TIMESTAMP, "")
    if not signature or not timestamp:
        raise Refused("no SendGrid signature or timestamp header")
    within(timestamp, now)
    key = load_der_public_key(base64.b64decode(public_key))
    assert isinstance(key, ec.EllipticCurvePublicKey)  # checked when the setting was read
    try:
        key.verify(
            base64.b64decode(signature, validate=True),
            timestamp.encode("ascii", "replace") + body,
            ec.ECDSA(hashes.SHA256()),
        )
    except (InvalidSignature, binascii.Error, ValueError):
        raise Refused("the SendGrid signature does not verify") from None
    try:
        payload = load_json(body)
    except ValueError as exc:
        raise Refused(f"signed, but {exc}") from None
    return Verified(payload, once=[signature.strip()])


def events(payload: Any) -> list[ProviderEvent]:
    """Bounces (bounce, dropped, blocked) and complaints (spamreport) of a verified batch."""
    out = []
    for e in payload if isinstance(payload, list) else []:
        if not isinstance(e, dict):
            continue
        name = str(e.get("event", ""))
        ours = bracketed(str(e.get("smtp-id") or ""))
        theirs = str(e.get("sg_message_id") or "")
        if name in ("bounce", "dropped"):
            blocked = str(e.get("type", "")) == "blocked"
            out.append(
                ProviderEvent(
                    kind="bounce",
                    recipient=str(e.get("email", "")),
                    # A block is about the sender (read from the text); a drop is SendGrid's
                    # own suppression of an address that bounced before.
                    hard=None if blocked else (name == "bounce" or None),
                    status=str(e.get("status") or ""),
                    diagnostic=str(e.get("reason") or ""),
                    message_id=ours,
                    provider_id=theirs,
                )
            )
        elif name == "spamreport":
            out.append(
                ProviderEvent(
                    kind="complaint",
                    recipient=str(e.get("email", "")),
                    message_id=ours,
                    provider_id=theirs,
                    feedback_type="abuse",
                )
            )
    return out
