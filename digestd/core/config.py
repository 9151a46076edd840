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

from digestd.core import config_providers as providers
from digestd.core.config_imap import (  # noqa: F401  (re-exported: callers import them here)
    IMAP_TLS_MODES,
    ImapTarget,
    mask_url_password,
    parse_imap_url,
)
from digestd.core.config_imap import folder as _folder
from digestd.core.config_imap import imap_url as _imap_url


class ConfigError(ValueError):
    """A setting has a wrong value; the message is one line naming the variable."""


SMTP_TLS_MODES = ("none", "starttls", "tls")
SECRET_FIELDS = frozenset({"smtp_password", "secret_key", "metrics_token", *providers.SECRETS})
LOG_FORMATS = ("text", "json")
# Settings that are URLs which may carry a password: only the password is masked.
URL_WITH_PASSWORD_FIELDS = frozenset({"inbound_imap"})


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
    # Inbound mail (bounces, complaints, unsubscribes by mail, commands); see README.
    bounce_address: str | None = None
    bounce_soft_limit: int = 5
    bounce_soft_reset_days: int = 7
    inbound_max_bytes: int = 10 * 1024 * 1024
    inbound_listen: str | None = None
    inbound_max_connections: int = 20
    inbound_timeout: float = 60.0
    inbound_imap: str | None = field(default=None, repr=False)
    inbound_imap_interval_seconds: int = 60
    inbound_imap_folder: str = "digestd-processed"
    inbound_imap_batch: int = 100
    inbound_tls_cert: Path | None = None
    inbound_tls_key: Path | None = None

    # Logs, metrics and `digestd doctor`.
    log_format: str = "text"
    metrics_token: str | None = field(default=None, repr=False)
    dkim_selector: str | None = None
    dns_server: str | None = None
    # The public trending page and feeds (README "Public pages and feeds").
    page_title: str = "Trending papers"
    page_blurb: str = (
        "The papers people are upvoting today, most upvoted first. Subscribe to get them "
        "by email, picked for your topics, at the hour you choose."
    )
    page_size: int = 30
    feed_days: int = 7
    # Hardening (issue 23): the web server's limits (README "Running behind a proxy").
    web_header_timeout: float = 10.0
    web_keepalive_timeout: int = 5
    web_max_connections: int = 200
    # DKIM signing (README "DKIM signing").
    dkim_key_file: Path | None = None
    dkim_domain: str | None = None
    dkim_ed25519_key_file: Path | None = None
    dkim_ed25519_selector: str | None = None
    # Provider webhooks (README "Provider webhooks"): each route is off until its secret is set.
    ses_topic_arns: str | None = None  # comma list: `ses_topics`
    sendgrid_public_key: str | None = None
    postmark_auth: str | None = field(default=None, repr=False)
    mailgun_signing_key: str | None = field(default=None, repr=False)
    webhook_secret: str | None = field(default=None, repr=False)
    # Replies to mail commands per hour (README "Commands"); 0: none.
    command_replies_per_hour_recipient: int = 2
    command_replies_per_hour_sender: int = 5
    command_replies_per_hour_total: int = 20
    # Subscribers (issue 23): whether the SMTP relay takes SMTPUTF8, so that addresses with a
    # non-ASCII local part can be delivered; without it such an address is refused at sign-up.
    smtp_smtputf8: bool = False
    # The reader's digest (issue 26): a paper first seen more than this many days after it
    # was published (or listed on Hugging Face) is a back catalogue, never mailed as new.
    paper_max_age_days: int = 7

    @property
    def imap(self) -> ImapTarget | None:
        """DIGESTD_INBOUND_IMAP taken apart (already validated at load), or None when unset."""
        return parse_imap_url(self.inbound_imap) if self.inbound_imap else None

    @property
    def ses_topics(self) -> tuple[str, ...]:
        """DIGESTD_SES_TOPIC_ARNS as a tuple (empty: the SES webhook is off)."""
        return tuple(self.ses_topic_arns.split(",")) if self.ses_topic_arns else ()

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
            elif f.name in URL_WITH_PASSWORD_FIELDS and value:
                value = mask_url_password(str(value))
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


def _choice(*choices: str) -> Callable[[str], str]:
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
    from email.utils import formataddr, parseaddr

    name, addr = parseaddr(raw)
    try:
        info = validate_email(addr, check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        raise ValueError(f"is not a valid address ({exc})") from None
    if "\n" in raw or "\r" in raw:
        raise ValueError("must be on one line")
    if info.ascii_email is None:
        raise ValueError(f"needs an ASCII local part (relays without SMTPUTF8), got {addr!r}")
    if info.ascii_domain == info.domain:
        return raw.strip()
    # An IDN domain is kept as A-labels: every relay and header can carry those.
    return formataddr((name, f"{info.local_part}@{info.ascii_domain}"))


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


def _optional_listen(raw: str) -> str | None:
    return _listen(raw) if raw.strip() else None


# VERP and unsubscribe tokens add at most 28 characters after `+` (inbound.addresses).
BOUNCE_LOCAL_MAX = 64 - 29


def _bounce_address(raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    if "<" in value or " " in value:
        raise ValueError(f"must be a bare address like bounces@bounce.example.org, got {raw!r}")
    try:
        info = validate_email(value, check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        raise ValueError(f"is not a valid address ({exc})") from None
    if info.ascii_email is None:
        raise ValueError(f"needs an ASCII local part (relays without SMTPUTF8), got {value!r}")
    value = f"{info.local_part}@{info.ascii_domain}"  # an IDN domain as A-labels
    local = value.rpartition("@")[0]
    if "+" in local or len(local) > BOUNCE_LOCAL_MAX:
        raise ValueError(
            f"local part must have no '+' and at most {BOUNCE_LOCAL_MAX} characters, got {local!r}"
        )
    return value.lower()


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


def _file(raw: str) -> Path | None:
    if not raw.strip():
        return None
    path = Path(raw.strip()).expanduser()
    if not path.is_file():
        raise ValueError(f"is not a readable file: {raw.strip()}")
    return path


def dns_server_address(value: str) -> tuple[str, int]:
    """(ip, port) of a DIGESTD_DNS_SERVER value: IP, IP:PORT or [IPv6]:PORT (port 53 default)."""
    import ipaddress

    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.removeprefix(":") or "53"
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, "53"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"must be an IP address with an optional :PORT, got {value!r}") from None
    return host, _int(1, 65535)(port)


def _dns_server(raw: str) -> str | None:
    if not raw.strip():
        return None
    dns_server_address(raw)
    return raw.strip()


def _selector(raw: str) -> str | None:
    value = raw.strip().lower()
    if not value:
        return None
    if not all(label and label.replace("-", "").replace("_", "").isalnum()
               for label in value.split(".")):  # fmt: skip
        raise ValueError(f"must be a DNS label such as s1 or mail2026, got {raw!r}")
    return value


def _one_line(limit: int) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = " ".join(raw.split())
        if not value:
            raise ValueError("must not be empty")
        if len(value) > limit:
            raise ValueError(f"must be at most {limit} characters, got {len(value)}")
        return value

    return parse


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"must be true or false, got {raw!r}")


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
    "DIGESTD_BOUNCE_ADDRESS": ("bounce_address", _bounce_address),
    "DIGESTD_BOUNCE_SOFT_LIMIT": ("bounce_soft_limit", _int(1, 1000)),
    "DIGESTD_BOUNCE_SOFT_RESET_DAYS": ("bounce_soft_reset_days", _int(1, 365)),
    "DIGESTD_INBOUND_MAX_BYTES": ("inbound_max_bytes", _int(1024, 1024**3)),
    "DIGESTD_INBOUND_LISTEN": ("inbound_listen", _optional_listen),
    "DIGESTD_INBOUND_MAX_CONNECTIONS": ("inbound_max_connections", _int(1, 1000)),
    "DIGESTD_INBOUND_TIMEOUT": ("inbound_timeout", _float(0.1, 3600)),
    "DIGESTD_INBOUND_IMAP": ("inbound_imap", _imap_url),
    "DIGESTD_INBOUND_IMAP_INTERVAL_SECONDS": ("inbound_imap_interval_seconds", _int(1, 86400)),
    "DIGESTD_INBOUND_IMAP_FOLDER": ("inbound_imap_folder", _folder),
    "DIGESTD_INBOUND_IMAP_BATCH": ("inbound_imap_batch", _int(1, 10000)),
    "DIGESTD_INBOUND_TLS_CERT": ("inbound_tls_cert", _file),
    "DIGESTD_INBOUND_TLS_KEY": ("inbound_tls_key", _file),
    "DIGESTD_LOG_FORMAT": ("log_format", _choice(*LOG_FORMATS)),
    "DIGESTD_METRICS_TOKEN": ("metrics_token", _secret),
    "DIGESTD_DKIM_SELECTOR": ("dkim_selector", _selector),
    "DIGESTD_DNS_SERVER": ("dns_server", _dns_server),
    "DIGESTD_PAGE_TITLE": ("page_title", _one_line(120)),
    "DIGESTD_PAGE_BLURB": ("page_blurb", _one_line(1000)),
    "DIGESTD_PAGE_SIZE": ("page_size", _int(1, 200)),
    "DIGESTD_FEED_DAYS": ("feed_days", _int(1, 60)),
    "DIGESTD_WEB_HEADER_TIMEOUT": ("web_header_timeout", _float(0.1, 600)),
    "DIGESTD_WEB_KEEPALIVE_TIMEOUT": ("web_keepalive_timeout", _int(1, 3600)),
    "DIGESTD_WEB_MAX_CONNECTIONS": ("web_max_connections", _int(1, 100000)),
    "DIGESTD_DKIM_KEY_FILE": ("dkim_key_file", _file),
    "DIGESTD_DKIM_DOMAIN": ("dkim_domain", providers.domain),
    "DIGESTD_DKIM_ED25519_KEY_FILE": ("dkim_ed25519_key_file", _file),
    "DIGESTD_DKIM_ED25519_SELECTOR": ("dkim_ed25519_selector", _selector),
    "DIGESTD_SES_TOPIC_ARNS": ("ses_topic_arns", providers.topic_arns),
    "DIGESTD_SENDGRID_PUBLIC_KEY": ("sendgrid_public_key", providers.sendgrid_public_key),
    "DIGESTD_POSTMARK_AUTH": ("postmark_auth", providers.postmark_auth),
    "DIGESTD_MAILGUN_SIGNING_KEY": ("mailgun_signing_key", providers.mailgun_signing_key),
    "DIGESTD_WEBHOOK_SECRET": ("webhook_secret", providers.webhook_secret),
    "DIGESTD_COMMAND_REPLIES_PER_HOUR_RECIPIENT": (
        "command_replies_per_hour_recipient",
        _int(0, 999),
    ),
    "DIGESTD_COMMAND_REPLIES_PER_HOUR_SENDER": ("command_replies_per_hour_sender", _int(0, 10000)),
    "DIGESTD_COMMAND_REPLIES_PER_HOUR_TOTAL": ("command_replies_per_hour_total", _int(0, 100000)),
    "DIGESTD_SMTP_SMTPUTF8": ("smtp_smtputf8", _bool),
    "DIGESTD_PAPER_MAX_AGE_DAYS": ("paper_max_age_days", _int(1, 3650)),
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
    if bool(settings.inbound_tls_cert) != bool(settings.inbound_tls_key):
        raise ConfigError(
            "DIGESTD_INBOUND_TLS_CERT and DIGESTD_INBOUND_TLS_KEY go together (set both or neither)"
        )
    if settings.inbound_listen and not settings.bounce_address:
        # The listener accepts mail only for the bounce domain: without it, it would refuse
        # every recipient.
        raise ConfigError(
            "DIGESTD_INBOUND_LISTEN is set but DIGESTD_BOUNCE_ADDRESS is not "
            "(the listener accepts mail only at the bounce address's domain)"
        )
    if problem := providers.dkim_mismatch(settings):
        raise ConfigError(problem)
    if "log_level" in values:
        settings = Settings(**{**values, "log_level": str(values["log_level"]).upper()})
    return settings
