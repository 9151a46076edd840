"""Settings from the environment and `.env`, validated once at start.

Nothing here runs at import time: `load_settings()` is called by an entry point,
and the result is passed down inside an `AppContext`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from email_validator import EmailNotValidError, validate_email


class ConfigError(ValueError):
    """A setting has a wrong value; the message is one line naming the variable."""


SMTP_TLS_MODES = ("none", "starttls", "tls")
SECRET_FIELDS = frozenset({"smtp_password", "secret_key"})


@dataclass(frozen=True)
class Settings:
    """Every DIGESTD_* setting, typed and validated."""

    database_url: str = "sqlite:///./digestd.db"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_tls: str = "none"
    smtp_timeout: float = 30.0
    smtp_max_connections: int = 4
    smtp_rate: float | None = None
    from_address: str = "digestd <digest@example.org>"
    base_url: str = "http://127.0.0.1:8025"
    secret_key: str | None = field(default=None, repr=False)
    listen: str = "127.0.0.1:8025"
    templates_dir: Path | None = None
    lease_seconds: int = 300
    fetch_timeout: float = 20.0
    fetch_max_bytes: int = 20 * 1024 * 1024
    fetch_concurrency: int = 4
    fetch_interval_minutes: int = 60
    batch_size: int = 500
    log_level: str = "INFO"

    @property
    def listen_host(self) -> str:
        return self.listen.rsplit(":", 1)[0]

    @property
    def listen_port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def redacted(self) -> dict[str, object]:
        """The settings as a dict with secrets masked, for logs and `digestd config show`."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value:
                value = "********"
            elif f.name == "database_url":
                from sqlalchemy.engine import make_url

                value = make_url(str(value)).render_as_string(hide_password=True)
            elif isinstance(value, Path):
                value = str(value)
            out[f.name] = value
        return out


# variable name -> (field name, parser). Parsers raise ValueError with a short reason.
def _ranged(convert: Callable[[str], Any], what: str, lo: float, hi: float) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        try:
            value = convert(raw)
        except ValueError:
            raise ValueError(f"must be {what}, got {raw!r}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}, got {value}")
        return value

    return parse


def _int(lo: int, hi: int) -> Callable[[str], int]:
    return _ranged(int, "a whole number", lo, hi)


def _float(lo: float, hi: float) -> Callable[[str], float]:
    return _ranged(float, "a number", lo, hi)


def _optional_rate(raw: str) -> float | None:
    if raw.strip() in ("", "0"):
        return None
    return _float(0.001, 100000)(raw)


def _choice(*choices: str):
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


def _database_url(raw: str) -> str:
    value = raw.strip()
    if value.startswith("postgres://"):
        value = "postgresql+psycopg://" + value[len("postgres://") :]
    elif value.startswith("postgresql://"):
        value = "postgresql+psycopg://" + value[len("postgresql://") :]
    if not (value.startswith("sqlite:///") or value.startswith("postgresql+psycopg://")):
        raise ValueError(
            "must be sqlite:///PATH or postgresql://USER@HOST:PORT/DB, "
            f"got {value.split('://')[0] + '://…'!r}"
        )
    return value


def _from_address(raw: str) -> str:
    from email.utils import parseaddr

    _, addr = parseaddr(raw)
    try:
        validate_email(addr, check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        raise ValueError(f"is not a valid address ({exc})") from None
    if "\n" in raw or "\r" in raw:
        raise ValueError("must be on one line")
    return raw.strip()


def _base_url(raw: str) -> str:
    value = raw.strip().rstrip("/")
    if not (value.startswith("http://") or value.startswith("https://")):
        raise ValueError(f"must start with http:// or https://, got {raw!r}")
    return value


def _listen(raw: str) -> str:
    host, sep, port = raw.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"must be HOST:PORT, got {raw!r}")
    _int(0, 65535)(port)
    return f"{host}:{port}"


def _text(raw: str) -> str:
    return raw


def _optional_text(raw: str) -> str | None:
    return raw or None


def _secret(raw: str) -> str | None:
    if not raw:
        return None
    if len(raw) < 16:
        raise ValueError("must be at least 16 characters long")
    return raw


def _directory(raw: str) -> Path | None:
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_dir():
        raise ValueError(f"is not a directory: {raw}")
    return path


PARSERS = {
    "DIGESTD_DATABASE_URL": ("database_url", _database_url),
    "DIGESTD_SMTP_HOST": ("smtp_host", _text),
    "DIGESTD_SMTP_PORT": ("smtp_port", _int(1, 65535)),
    "DIGESTD_SMTP_USERNAME": ("smtp_username", _optional_text),
    "DIGESTD_SMTP_PASSWORD": ("smtp_password", _optional_text),
    "DIGESTD_SMTP_TLS": ("smtp_tls", _choice(*SMTP_TLS_MODES)),
    "DIGESTD_SMTP_TIMEOUT": ("smtp_timeout", _float(0.1, 600)),
    "DIGESTD_SMTP_MAX_CONNECTIONS": ("smtp_max_connections", _int(1, 100)),
    "DIGESTD_SMTP_RATE": ("smtp_rate", _optional_rate),
    "DIGESTD_FROM": ("from_address", _from_address),
    "DIGESTD_BASE_URL": ("base_url", _base_url),
    "DIGESTD_SECRET_KEY": ("secret_key", _secret),
    "DIGESTD_LISTEN": ("listen", _listen),
    "DIGESTD_TEMPLATES_DIR": ("templates_dir", _directory),
    "DIGESTD_LEASE_SECONDS": ("lease_seconds", _int(1, 86400)),
    "DIGESTD_FETCH_TIMEOUT": ("fetch_timeout", _float(0.1, 600)),
    "DIGESTD_FETCH_MAX_BYTES": ("fetch_max_bytes", _int(1024, 1024**3)),
    "DIGESTD_FETCH_CONCURRENCY": ("fetch_concurrency", _int(1, 64)),
    "DIGESTD_FETCH_INTERVAL_MINUTES": ("fetch_interval_minutes", _int(1, 10080)),
    "DIGESTD_BATCH_SIZE": ("batch_size", _int(1, 100000)),
    "DIGESTD_LOG_LEVEL": ("log_level", _choice("debug", "info", "warning", "error")),
}


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
) -> Settings:
    """Settings from `.env` overlaid by the environment; ConfigError on bad input."""
    merged: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        merged.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    merged.update(os.environ if environ is None else environ)

    values: dict[str, Any] = {}
    for var, (name, parse) in PARSERS.items():
        if var not in merged:
            continue
        raw = merged[var]
        try:
            values[name] = parse(raw)
        except ValueError as exc:
            # Never echo a secret back, even when it is wrong.
            reason = "is invalid" if name in SECRET_FIELDS and "characters" not in str(exc) else exc
            raise ConfigError(f"{var} {reason}") from None
    settings = Settings(**values)
    if settings.smtp_password and not settings.smtp_username:
        raise ConfigError("DIGESTD_SMTP_PASSWORD is set but DIGESTD_SMTP_USERNAME is not")
    if "log_level" in values:
        settings = Settings(**{**values, "log_level": str(values["log_level"]).upper()})
    return settings
