"""Parsers of the DKIM and provider-webhook settings (README "DKIM signing" and "Provider
webhooks"), kept beside `config` so that module stays small. Each raises ValueError with a
short reason that never repeats a secret."""

from __future__ import annotations

import base64
import binascii
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from digestd.core.config import Settings

# The settings of this module that are secrets: masked by `digestd config show`.
SECRETS = ("postmark_auth", "mailgun_signing_key", "webhook_secret")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
# arn:aws:sns:REGION:ACCOUNT:TOPIC (also the aws-cn / aws-us-gov partitions).
_TOPIC_ARN = re.compile(r"arn:aws(?:-[a-z]+)*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]{1,256}")


def domain(raw: str) -> str | None:
    """A DNS domain such as example.org (lowercased), or None when empty."""
    value = raw.strip().lower().rstrip(".")
    if not value:
        return None
    labels = value.split(".")
    if len(labels) < 2 or len(value) > 253 or not all(_LABEL.fullmatch(x) for x in labels):
        raise ValueError(f"must be a domain name such as example.org, got {raw!r}")
    return value


def topic_arns(raw: str) -> str | None:
    """A comma list of SNS topic ARNs, normalized (`a,b`); None when empty."""
    arns = [a.strip() for a in raw.split(",") if a.strip()]
    for arn in arns:
        if not _TOPIC_ARN.fullmatch(arn):
            raise ValueError(
                f"must be SNS topic ARNs (arn:aws:sns:REGION:ACCOUNT:TOPIC), got {arn!r}"
            )
    return ",".join(arns) or None


def sendgrid_public_key(raw: str) -> str | None:
    """The base64 verification key SendGrid shows (an EC P-256 public key), or None."""
    value = "".join(raw.split())
    if not value:
        return None
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    try:
        key = load_der_public_key(base64.b64decode(value, validate=True))
    except (ValueError, binascii.Error):
        raise ValueError("must be the base64 public key SendGrid shows") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("must be SendGrid's ECDSA P-256 public key")
    return value


def postmark_auth(raw: str) -> str | None:
    """`user:password` of the basic auth set on the Postmark webhook, or None."""
    value = raw.strip()
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or len(password) < 16:
        raise ValueError("must be USER:PASSWORD with a password of at least 16 characters")
    return value


def mailgun_signing_key(raw: str) -> str | None:
    """Mailgun's HTTP webhook signing key, or None."""
    value = raw.strip()
    if not value:
        return None
    if len(value) < 16 or not value.isascii() or any(c.isspace() for c in value):
        raise ValueError("must be the webhook signing key Mailgun shows (16+ characters)")
    return value


def webhook_secret(raw: str) -> str | None:
    """A Standard Webhooks secret, `whsec_` + base64 of at least 24 bytes, or None."""
    value = raw.strip()
    if not value:
        return None
    try:
        key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
    except (ValueError, binascii.Error):
        key = b""
    if not value.startswith("whsec_") or len(key) < 24:
        raise ValueError("must be whsec_ followed by base64 of at least 24 bytes")
    return value


def dkim_mismatch(s: Settings) -> str | None:
    """What of DIGESTD_DKIM_* does not go together, or None. The keys themselves are read
    (and checked) by `mail.dkim` and `digestd doctor`."""
    if s.dkim_key_file and not s.dkim_selector:
        return "DIGESTD_DKIM_KEY_FILE is set but DIGESTD_DKIM_SELECTOR is not"
    if s.dkim_ed25519_key_file and not s.dkim_key_file:
        return (
            "DIGESTD_DKIM_ED25519_KEY_FILE is set but DIGESTD_DKIM_KEY_FILE is not "
            "(Ed25519 signs beside RSA, never instead: Gmail and Yahoo need RSA)"
        )
    return None
