"""Settings: defaults, .env, and one clear line for each wrong value."""

from __future__ import annotations

from pathlib import Path

import pytest

from digestd.core.config import ConfigError, load_settings


def test_defaults_need_no_configuration() -> None:
    s = load_settings({}, env_file=None)
    assert s.database_url == "sqlite:///./digestd.db"
    assert s.smtp_tls == "none"
    assert s.smtp_max_connections == 4


def test_env_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("DIGESTD_SMTP_HOST=mail.example.org\nDIGESTD_SMTP_PORT=2525\n")
    s = load_settings({"DIGESTD_SMTP_PORT": "587"}, env_file=env)
    assert s.smtp_host == "mail.example.org"
    assert s.smtp_port == 587


def test_postgres_url_is_normalized_to_psycopg3() -> None:
    s = load_settings({"DIGESTD_DATABASE_URL": "postgresql://u@db:5432/x"}, env_file=None)
    assert s.database_url == "postgresql+psycopg://u@db:5432/x"


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("DIGESTD_SMTP_PORT", "abc", "DIGESTD_SMTP_PORT must be a whole number"),
        ("DIGESTD_SMTP_PORT", "70000", "DIGESTD_SMTP_PORT must be between 1 and 65535"),
        ("DIGESTD_FETCH_TIMEOUT", "soon", "DIGESTD_FETCH_TIMEOUT must be a number, got 'soon'"),
        ("DIGESTD_FETCH_TIMEOUT", "900", "DIGESTD_FETCH_TIMEOUT must be between 0.1 and 600"),
        ("DIGESTD_SMTP_TLS", "ssl", "DIGESTD_SMTP_TLS must be one of none, starttls, tls"),
        ("DIGESTD_DATABASE_URL", "mysql://x", "DIGESTD_DATABASE_URL must be sqlite"),
        ("DIGESTD_FROM", "not an address", "DIGESTD_FROM is not a valid address"),
        ("DIGESTD_BASE_URL", "example.org", "DIGESTD_BASE_URL must start with http"),
        ("DIGESTD_LISTEN", "8080", "DIGESTD_LISTEN must be HOST:PORT"),
        ("DIGESTD_SECRET_KEY", "short", "DIGESTD_SECRET_KEY must be at least 16 characters"),
    ],
)
def test_wrong_value_gives_one_line_naming_the_variable(
    var: str, value: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({var: value}, env_file=None)
    message = str(info.value)
    assert message.startswith(expected)
    assert "\n" not in message


def test_secrets_are_never_echoed() -> None:
    s = load_settings(
        {
            "DIGESTD_SMTP_USERNAME": "bot",
            "DIGESTD_SMTP_PASSWORD": "hunter2-very-secret",
            "DIGESTD_SECRET_KEY": "k" * 32,
        },
        env_file=None,
    )
    assert "hunter2" not in repr(s)
    assert "hunter2" not in str(s.redacted())
    assert "k" * 32 not in str(s.redacted())


def test_every_default_passes_its_own_validation() -> None:
    from digestd.core.config import PARSERS, Settings

    defaults = Settings()
    for var, (name, parse) in PARSERS.items():
        value = getattr(defaults, name)
        if value is None:
            continue
        assert parse(str(value)) is not None, var
