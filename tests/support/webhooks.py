"""Provider webhooks for tests: requests signed as each provider signs them, with test keys,
and a loopback HTTPS server standing in for SNS (its signing certificate and SubscribeURL).
Payloads follow the providers' documented examples (SES notification contents, SendGrid's
event webhook reference, Postmark's bounce webhook, Mailgun's webhook payloads, Resend's
email.bounced), with our test addresses and Message-IDs."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from standardwebhooks.webhooks import Webhook

from digestd.inbound.webhooks.ses import string_to_sign
from tests.support.tls import self_signed_cert

TOPIC = "arn:aws:sns:us-east-1:123456789012:digestd-ses"


# ---- SES through SNS ---------------------------------------------------------------------


@dataclass
class SnsStandIn:
    """HTTPS on 127.0.0.1 serving the SNS signing certificate and counting SubscribeURL hits."""

    base: str
    key: rsa.RSAPrivateKey
    client_context: ssl.SSLContext
    confirmed: list[str] = field(default_factory=list)

    @property
    def cert_url(self) -> str:
        return f"{self.base}/SimpleNotificationService-test.pem"

    def sign(self, message: dict[str, Any], version: str = "1") -> dict[str, Any]:
        """`message` with SignatureVersion, SigningCertURL and Signature set."""
        message = {**message, "SignatureVersion": version, "SigningCertURL": self.cert_url}
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(string_to_sign(message), padding.PKCS1v15(), algorithm)
        message["Signature"] = base64.b64encode(signature).decode()
        return message


@contextmanager
def sns_stand_in(folder: Path) -> Iterator[SnsStandIn]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    tls = self_signed_cert(folder)
    confirmed: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.endswith(".pem"):
                body = pem
            elif self.path.startswith("/confirm"):
                confirmed.append(self.path)
                body = b"<ConfirmSubscriptionResponse/>"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = tls.server_context().wrap_socket(server.socket, server_side=True)
    # Polled every 0.05 s, not socketserver's 0.5 s, which shutdown() would wait out.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield SnsStandIn(
            f"https://127.0.0.1:{server.server_address[1]}", key, tls.client_context(), confirmed
        )
    finally:
        server.shutdown()
        server.server_close()


def ses_bounce(recipient: str, message_id: str, *, permanent: bool = True) -> dict[str, Any]:
    """An SES bounce notification (notification contents, "bounce" example)."""
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent" if permanent else "Transient",
            "bounceSubType": "General" if permanent else "MailboxFull",
            "bouncedRecipients": [
                {
                    "emailAddress": recipient,
                    "action": "failed",
                    "status": "5.1.1" if permanent else "4.2.2",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown"
                    if permanent
                    else "smtp; 452 4.2.2 mailbox full",
                }
            ],
            "timestamp": "2026-11-26T08:35:06.477Z",
            "feedbackId": "0102015fd91a6479-ae22395c-1f7d-4423-a9e5-e0715bffc731-000000",
            "reportingMTA": "dsn; a4-8.smtp-out.eu-west-1.amazonses.com",
        },
        "mail": {
            "timestamp": "2026-11-26T08:35:04.000Z",
            "source": "digest@example.org",
            "messageId": "0102015fd91a5ca3-93c245fe-e333-46ae-8fed-96160d20cfab-000000",
            "destination": [recipient],
            "headersTruncated": False,
            "headers": [{"name": "Message-ID", "value": message_id}],
            "commonHeaders": {"from": ["digest@example.org"], "messageId": message_id},
        },
    }


def sns_notification(inner: dict[str, Any], when: dt.datetime, msg_id: str) -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": msg_id,
        "TopicArn": TOPIC,
        "Message": json.dumps(inner),
        "Timestamp": when.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
    }


# ---- SendGrid, Mailgun, Postmark, Standard Webhooks ----------------------------------------


def sendgrid_keys() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A P-256 key and its public half as SendGrid shows it (base64 DER)."""
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, base64.b64encode(der).decode()


def sendgrid_headers(key: ec.EllipticCurvePrivateKey, body: bytes, ts: int) -> dict[str, str]:
    signature = key.sign(str(ts).encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": str(ts),
    }


def sendgrid_bounce(recipient: str, message_id: str, ts: int) -> list[dict[str, Any]]:
    """SendGrid's documented event batch: processed, delivered, then a bounce."""
    common = {"email": recipient, "timestamp": ts, "smtp-id": message_id, "category": "digest"}
    return [
        {**common, "event": "processed", "sg_event_id": "a1", "sg_message_id": "sg.1"},
        {
            **common,
            "event": "delivered",
            "sg_event_id": "a2",
            "sg_message_id": "sg.1",
            "response": "250 OK",
        },
        {
            **common,
            "event": "bounce",
            "sg_event_id": "a3",
            "sg_message_id": "sg.1",
            "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
            "status": "5.1.1",
            "type": "bounce",
            "bounce_classification": "Invalid Address",
        },
    ]


def mailgun_body(key: str, event: dict[str, Any], ts: int, token: str) -> bytes:
    signature = hmac.new(key.encode(), f"{ts}{token}".encode(), hashlib.sha256).hexdigest()
    return json.dumps(
        {
            "signature": {"timestamp": str(ts), "token": token, "signature": signature},
            "event-data": event,
        }
    ).encode()


def mailgun_failed(recipient: str, message_id: str) -> dict[str, Any]:
    """Mailgun's documented "failed" (permanent) event."""
    return {
        "event": "failed",
        "severity": "permanent",
        "reason": "bounce",
        "id": "G9Bn5sl1TC6nu79C8C0bwg",
        "recipient": recipient,
        "delivery-status": {
            "code": 550,
            "message": "5.1.1 The email account that you tried to reach does not exist",
            "description": "",
        },
        "message": {"headers": {"message-id": message_id.strip("<>"), "subject": "digest"}},
    }


def postmark_bounce(recipient: str, ident: int) -> dict[str, Any]:
    """Postmark's documented bounce webhook."""
    return {
        "RecordType": "Bounce",
        "ID": ident,
        "Type": "HardBounce",
        "TypeCode": 1,
        "Name": "Hard bounce",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Description": "The server was unable to deliver your message (ex: unknown user).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": recipient,
        "BouncedAt": "2026-11-26T08:35:10.2735393-04:00",
        "Inactive": True,
        "Subject": "Your papers digest",
    }


def standard_headers(secret: str, msg_id: str, ts: int, body: bytes) -> dict[str, str]:
    when = dt.datetime.fromtimestamp(ts, dt.UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": Webhook(secret).sign(msg_id, when, body),
    }


def resend_bounced(recipient: str, message_id: str) -> dict[str, Any]:
    """Resend's documented email.bounced event."""
    return {
        "type": "email.bounced",
        "created_at": "2026-11-26T08:35:11.894719+00:00",
        "data": {
            "email_id": "56761188-7520-42d8-8898-ff6fc54ce618",
            "from": "Papers <digest@example.org>",
            "to": [recipient],
            "subject": "Your papers digest",
            "headers": [{"name": "Message-ID", "value": message_id}],
            "bounce": {
                "message": "The recipient's email address does not exist (550 5.1.1).",
                "subType": "Suppressed",
                "type": "Permanent",
            },
        },
    }
