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
