"""Inbound transport settings: the IMAP URL is taken apart once, its password never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from digestd.core.config import ConfigError, load_settings


def _imap(url: str):
    target = load_settings({"DIGESTD_INBOUND_IMAP": url}, env_file=None).imap
    assert target is not None
    return target


def test_imaps_url_defaults_to_tls_port_993_and_inbox() -> None:
    t = _imap("imaps://bounces%40example.org:p%40ss@mail.example.org")
    assert (t.host, t.port, t.username, t.password, t.mailbox, t.tls) == (
        "mail.example.org",
        993,
        "bounces@example.org",
        "p@ss",
        "INBOX",
        "tls",
    )


def test_imap_url_means_starttls_unless_told_plain() -> None:
    assert _imap("imap://u:p@h/Bounces").tls == "starttls"
    t = _imap("imap://u:p@127.0.0.1:1143/INBOX/Bounces?tls=none")
    assert (t.port, t.mailbox, t.tls) == (1143, "INBOX/Bounces", "none")


@pytest.mark.parametrize(
    "url, why",
    [
        ("pop3://u:p@h", "imaps://"),
        ("imaps://h/INBOX", "user and a password"),
        ("imaps://u@h/INBOX", "user and a password"),
        ("imaps://u:p@h:99999", "imaps://USER"),
        ("imaps://u:p@h?tls=none", "?tls="),
    ],
)
def test_a_bad_imap_url_is_one_line_without_the_password(url: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"DIGESTD_INBOUND_IMAP": url}, env_file=None)
    message = str(caught.value)
    assert message.startswith("DIGESTD_INBOUND_IMAP ") and why in message
    assert "\n" not in message and ":p@" not in message


def test_the_imap_password_is_masked_in_config_show_and_repr() -> None:
    s = load_settings(
        {"DIGESTD_INBOUND_IMAP": "imaps://bob:hunter2-xyz@mail.example.org/INBOX"}, env_file=None
    )
    shown = s.redacted()["inbound_imap"]
    assert shown == "imaps://bob:********@mail.example.org/INBOX"
    assert "hunter2" not in repr(s) and "hunter2" not in repr(s.imap)


def test_listen_and_limits() -> None:
    s = load_settings(
        {
            "DIGESTD_INBOUND_LISTEN": "0.0.0.0:25",
            "DIGESTD_INBOUND_MAX_BYTES": "2048",
            "DIGESTD_BOUNCE_ADDRESS": "bounces@bounce.example.org",
        },
        env_file=None,
    )
    assert (s.inbound_listen, s.inbound_max_bytes) == ("0.0.0.0:25", 2048)
    assert load_settings({"DIGESTD_INBOUND_LISTEN": ""}, env_file=None).inbound_listen is None
    with pytest.raises(ConfigError, match="DIGESTD_INBOUND_LISTEN must be HOST:PORT"):
        load_settings({"DIGESTD_INBOUND_LISTEN": "25"}, env_file=None)


def test_a_listener_without_a_bounce_address_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="DIGESTD_INBOUND_LISTEN is set but DIGESTD_BOUNCE_"):
        load_settings({"DIGESTD_INBOUND_LISTEN": "127.0.0.1:2525"}, env_file=None)


def test_the_listener_certificate_and_key_go_together(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("x")
    key.write_text("x")
    s = load_settings(
        {"DIGESTD_INBOUND_TLS_CERT": str(cert), "DIGESTD_INBOUND_TLS_KEY": str(key)},
        env_file=None,
    )
    assert (s.inbound_tls_cert, s.inbound_tls_key) == (cert, key)
    with pytest.raises(ConfigError, match="set both or neither"):
        load_settings({"DIGESTD_INBOUND_TLS_CERT": str(cert)}, env_file=None)
    with pytest.raises(ConfigError, match="DIGESTD_INBOUND_TLS_KEY is not a readable file"):
        load_settings(
            {"DIGESTD_INBOUND_TLS_CERT": str(cert), "DIGESTD_INBOUND_TLS_KEY": "/nonexistent"},
            env_file=None,
        )
