"""Amazon SES bounces and complaints, delivered by SNS (`POST /webhooks/ses`).

An SNS message is signed by AWS with the key of a certificate it serves at
`SigningCertURL`: signature version 1 is SHA1withRSA, version 2 SHA256withRSA, over the
message's fields in a fixed order. What is checked, before anything is read:
- the certificate URL is https on an SNS host (`sns.<region>.amazonaws.com`, also `.com.cn`)
  and its path ends in `.pem`; the certificate is fetched (TLS verified, bounded, cached);
- the signature verifies with that certificate's key (v1 or v2; anything else refused);
- `TopicArn` is one of DIGESTD_SES_TOPIC_ARNS;
- `Timestamp` is within an hour (SNS retries a delivery with its original timestamp);
- `MessageId` is accepted once.
A `SubscriptionConfirmation` that passes the same checks is confirmed by fetching its
`SubscribeURL`, only when that URL is https on an SNS host too.

Tests cannot reach AWS: they serve a certificate of their own from a loopback HTTPS server
and construct `SnsVerifier` with a host check that allows 127.0.0.1 (`allowed_host`) and a
TLS context trusting their certificate. The daemon always uses the default, `is_sns_host`;
no setting changes it.
"""

from __future__ import annotations

import base64
import binascii
import re
import ssl
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from digestd.inbound.webhooks.checks import Refused, Verified, as_dict, load_json
from digestd.inbound.webhooks.events import ProviderEvent, bracketed

TIMESTAMP_WINDOW = timedelta(hours=1)
CERT_MAX_BYTES = 64 * 1024
FETCH_TIMEOUT = 10.0
_SNS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")
_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
_FIELDS["UnsubscribeConfirmation"] = _FIELDS["SubscriptionConfirmation"]


def is_sns_host(host: str) -> bool:
    """An SNS endpoint of AWS (sns.us-east-1.amazonaws.com, …)."""
    return bool(_SNS_HOST.fullmatch(host.lower()))


def string_to_sign(message: dict[str, Any]) -> bytes:
    """The canonical text SNS signs: `Name\\nvalue\\n` for each field of the type, in order,
    Subject only when present."""
    fields = _FIELDS.get(str(message.get("Type")))
    if fields is None:
        raise Refused(f"unknown SNS message type {str(message.get('Type'))[:40]!r}")
    out = []
    for name in fields:
        value = message.get(name)
        if value is None and name == "Subject":
            continue
        if not isinstance(value, str):
            raise Refused(f"SNS message without {name}")
        out.append(f"{name}\n{value}\n")
    return "".join(out).encode("utf-8")


class SnsVerifier:
    """Checks SNS messages; keeps the certificates it fetched (a few, by URL)."""

    def __init__(
        self,
        topic_arns: tuple[str, ...],
        *,
        allowed_host: Callable[[str], bool] = is_sns_host,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.topic_arns = topic_arns
        self._allowed_host = allowed_host
        self._verify: ssl.SSLContext | bool = tls_context or True
        self._certs: OrderedDict[str, rsa.RSAPublicKey] = OrderedDict()

    def check_url(self, url: str, what: str) -> str:
        """`url` when it is https on an allowed host (and, for a certificate, a .pem path)."""
        try:
            parts = urlsplit(url)
            host = parts.hostname or ""
        except ValueError:
            raise Refused(f"{what} is not a URL") from None
        if parts.scheme != "https" or not self._allowed_host(host) or parts.username:
            raise Refused(f"{what} is not https on an SNS host: {url[:120]!r}")
        if what == "SigningCertURL" and not parts.path.endswith(".pem"):
            raise Refused(f"{what} is not a .pem file: {url[:120]!r}")
        return url

    async def verify(self, body: bytes, now: datetime) -> Verified:
        """The SNS message, when every check passes; Refused otherwise."""
        try:
            message = load_json(body)
        except ValueError as exc:
            raise Refused(f"not an SNS message: {exc}") from None
        if not isinstance(message, dict):
            raise Refused("not an SNS message")
        data = string_to_sign(message)
        version = str(message.get("SignatureVersion"))
        algorithm: hashes.HashAlgorithm
        if version == "1":
            algorithm = hashes.SHA1()  # what SNS signs with in version 1
        elif version == "2":
            algorithm = hashes.SHA256()
        else:
            raise Refused(f"SNS signature version {version[:8]!r} is not 1 or 2")
        key = await self._certificate(
            self.check_url(str(message.get("SigningCertURL")), "SigningCertURL")
        )
        try:
            signature = base64.b64decode(str(message.get("Signature")), validate=True)
            key.verify(signature, data, padding.PKCS1v15(), algorithm)
        except (InvalidSignature, binascii.Error, ValueError):
            raise Refused("the SNS signature does not verify") from None
        if message.get("TopicArn") not in self.topic_arns:
            raise Refused(
                f"topic {str(message.get('TopicArn'))[:120]!r} is not in DIGESTD_SES_TOPIC_ARNS"
            )
        try:
            when = datetime.fromisoformat(str(message["Timestamp"]).replace("Z", "+00:00"))
        except ValueError:
            raise Refused("the SNS Timestamp is not a time") from None
        if abs(now - when) > TIMESTAMP_WINDOW:
            raise Refused(f"the SNS Timestamp {when:%Y-%m-%d %H:%M:%S} is more than an hour off")
        return Verified(message, once=[str(message["MessageId"])])

    async def _certificate(self, url: str) -> rsa.RSAPublicKey:
        key = self._certs.get(url)
        if key is not None:
            return key
        pem = await self._get(url, "certificate")
        try:
            public = x509.load_pem_x509_certificate(pem).public_key()
        except ValueError:
            raise Refused("SigningCertURL did not serve a PEM certificate") from None
        if not isinstance(public, rsa.RSAPublicKey):
            raise Refused("the SNS certificate's key is not RSA")
        self._certs[url] = public
        if len(self._certs) > 16:
            self._certs.popitem(last=False)
        return public

    async def _get(self, url: str, what: str) -> bytes:
        """GET `url` (no redirects, TLS verified, at most CERT_MAX_BYTES)."""
        try:
            async with (
                httpx.AsyncClient(
                    verify=self._verify, timeout=FETCH_TIMEOUT, trust_env=False
                ) as client,
                client.stream("GET", url) as response,
            ):
                if response.status_code != 200:
                    raise Refused(f"the {what} URL answered {response.status_code}")
                data = b""
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > CERT_MAX_BYTES:
                        raise Refused(f"the {what} is larger than {CERT_MAX_BYTES} bytes")
                return data
        except httpx.HTTPError as exc:
            raise Refused(f"fetching the {what} failed: {type(exc).__name__}") from None

    async def confirm(self, message: dict[str, Any]) -> None:
        """Confirm a verified SubscriptionConfirmation by fetching its SubscribeURL."""
        await self._get(
            self.check_url(str(message.get("SubscribeURL")), "SubscribeURL"), "SubscribeURL"
        )


def events(message: dict[str, Any]) -> list[ProviderEvent]:
    """The bounces and complaints of a verified SNS Notification from SES (notifications
    use `notificationType`, event publishing `eventType`); other types give none."""
    try:
        inner = load_json(str(message.get("Message", "")).encode("utf-8"))
    except ValueError:
        return []
    if not isinstance(inner, dict):
        return []
    kind = str(inner.get("notificationType") or inner.get("eventType") or "")
    mail = as_dict(inner.get("mail"))
    ours = _our_message_id(mail)
    theirs = str(mail.get("messageId") or "")
    out = []
    if kind == "Bounce" and isinstance(inner.get("bounce"), dict):
        bounce = inner["bounce"]
        hard = {"Permanent": True, "Transient": False}.get(str(bounce.get("bounceType")))
        for r in _list(bounce.get("bouncedRecipients")):
            out.append(
                ProviderEvent(
                    kind="bounce",
                    recipient=str(r.get("emailAddress", "")),
                    hard=hard,
                    status=str(r.get("status") or ""),
                    diagnostic=str(r.get("diagnosticCode") or bounce.get("bounceSubType") or ""),
                    message_id=ours,
                    provider_id=theirs,
                )
            )
    elif kind == "Complaint" and isinstance(inner.get("complaint"), dict):
        complaint = inner["complaint"]
        for r in _list(complaint.get("complainedRecipients")):
            out.append(
                ProviderEvent(
                    kind="complaint",
                    recipient=str(r.get("emailAddress", "")),
                    message_id=ours,
                    provider_id=theirs,
                    feedback_type=str(complaint.get("complaintFeedbackType") or "abuse"),
                )
            )
    return out


def _our_message_id(mail: dict[str, Any]) -> str:
    """Our Message-ID as SES reports it: commonHeaders.messageId, else the original headers
    (SES's own `mail.messageId` is its id, not ours)."""
    common = mail.get("commonHeaders")
    if isinstance(common, dict) and isinstance(common.get("messageId"), str):
        return bracketed(common["messageId"])
    for header in _list(mail.get("headers")):
        if str(header.get("name", "")).lower() == "message-id":
            return bracketed(str(header.get("value", "")))
    return ""


def _list(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
