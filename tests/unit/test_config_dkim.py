"""DKIM settings: what goes together, and a signing domain that is a domain."""

from __future__ import annotations

from pathlib import Path

import pytest

from digestd.core.config import ConfigError, load_settings


def test_dkim_settings_go_together(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    key.write_text("x")
    with pytest.raises(ConfigError, match="DIGESTD_DKIM_SELECTOR is not"):
        load_settings({"DIGESTD_DKIM_KEY_FILE": str(key)}, env_file=None)
    with pytest.raises(ConfigError, match="never instead"):
        load_settings(
            {"DIGESTD_DKIM_ED25519_KEY_FILE": str(key), "DIGESTD_DKIM_SELECTOR": "s1"},
            env_file=None,
        )
    with pytest.raises(ConfigError, match="DIGESTD_DKIM_KEY_FILE is not a readable file"):
        load_settings({"DIGESTD_DKIM_KEY_FILE": str(tmp_path / "none")}, env_file=None)
    with pytest.raises(ConfigError, match="DIGESTD_DKIM_DOMAIN must be a domain"):
        load_settings({"DIGESTD_DKIM_DOMAIN": "not a domain"}, env_file=None)
    s = load_settings(
        {
            "DIGESTD_DKIM_KEY_FILE": str(key),
            "DIGESTD_DKIM_SELECTOR": "S1",
            "DIGESTD_DKIM_DOMAIN": "Mail.Example.ORG.",
        },
        env_file=None,
    )
    assert (s.dkim_key_file, s.dkim_selector, s.dkim_domain) == (key, "s1", "mail.example.org")


def test_webhook_secrets_are_validated_and_masked() -> None:
    secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="
    s = load_settings(
        {
            "DIGESTD_SES_TOPIC_ARNS": " arn:aws:sns:us-east-1:123456789012:a , "
            "arn:aws:sns:eu-west-1:123456789012:b",
            "DIGESTD_POSTMARK_AUTH": "hook:postmark-password-0123",
            "DIGESTD_MAILGUN_SIGNING_KEY": "key-0123456789abcdef",
            "DIGESTD_WEBHOOK_SECRET": secret,
        },
        env_file=None,
    )
    assert s.ses_topics == (
        "arn:aws:sns:us-east-1:123456789012:a",
        "arn:aws:sns:eu-west-1:123456789012:b",
    )
    shown = s.redacted()
    for name in ("postmark_auth", "mailgun_signing_key", "webhook_secret"):
        assert shown[name] == "********"
    assert "postmark-password" not in repr(s) and secret not in repr(s)
    for var, bad in (
        ("DIGESTD_SES_TOPIC_ARNS", "arn:aws:s3:::bucket"),
        ("DIGESTD_SENDGRID_PUBLIC_KEY", "bm90IGEga2V5"),
        ("DIGESTD_POSTMARK_AUTH", "nopassword"),
        ("DIGESTD_WEBHOOK_SECRET", "whsec_c2hvcnQ="),
    ):
        with pytest.raises(ConfigError, match=var) as caught:
            load_settings({var: bad}, env_file=None)
        assert bad not in str(caught.value) or var == "DIGESTD_SES_TOPIC_ARNS"
