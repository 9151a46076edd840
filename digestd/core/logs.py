"""Logging for every digestd process: readable text lines, or one JSON object per line.

One handler on the root logger serves digestd's own loggers and those of the libraries it
hosts (uvicorn is told not to install its own, APScheduler propagates), so
DIGESTD_LOG_FORMAT=json turns every line of a process into JSON.

Fields: `time` (UTC, ISO 8601), `level`, `logger`, `message`, then whatever the call passed
as `extra=` (a job's counts, `duration_ms`, `worker`, `subscriber_id`, `delivery_id`).
Addresses and secrets never leave a process through its logs: every formatted line is
scrubbed of e-mail addresses and of the configured secrets, whatever logged them (an SMTP
reply quoting the recipient, a library's error message).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from digestd.core.config import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Local part and domain as they appear in mail and SMTP replies (bare or in <…>); the last
# label is a name (a TLD), so `user@127.0.0.1:993` (an IMAP login to a host) stays readable.
ADDRESS_RE = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z][A-Za-z0-9-]*\b"
)
ADDRESS_MASK = "<address>"
SECRET_MASK = "********"
# Noise some libraries attach to records: uvicorn's coloured copy of the message, and the
# asyncio task name (None outside tasks).
NOT_FIELDS = (*RESERVED_ATTRS, "color_message", "taskName")


class Scrubber:
    """Masks e-mail addresses and known secret values in a formatted line."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        values: set[str] = set()
        for secret in secrets:
            if secret:
                values.add(secret)
                values.add(json.dumps(secret)[1:-1])  # as it appears inside a JSON string
        # Longest first, so a secret containing another is masked whole.
        self.secrets = sorted(values, key=len, reverse=True)

    def __call__(self, line: str) -> str:
        for secret in self.secrets:
            line = line.replace(secret, SECRET_MASK)
        return ADDRESS_RE.sub(ADDRESS_MASK, line)


def _utc_iso(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class TextLines(logging.Formatter):
    """`time LEVEL logger message`, scrubbed."""

    def __init__(self, scrub: Scrubber) -> None:
        super().__init__(TEXT_FORMAT)
        self.scrub = scrub

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc_iso(record)

    def format(self, record: logging.LogRecord) -> str:
        return self.scrub(super().format(record))


class JsonLines(JsonFormatter):
    """One JSON object per record (python-json-logger), scrubbed; extras become fields."""

    def __init__(self, scrub: Scrubber) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            reserved_attrs=list(NOT_FIELDS),
            json_ensure_ascii=False,
        )
        self.scrub = scrub

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc_iso(record)

    def format(self, record: logging.LogRecord) -> str:
        # One line per record even with a traceback: json escapes its newlines.
        return self.scrub(super().format(record))


class _StderrHandler(logging.StreamHandler[Any]):
    """Writes to whatever sys.stderr is at the time (test runners swap it per command)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def make_formatter(settings: Settings) -> logging.Formatter:
    """The formatter DIGESTD_LOG_FORMAT asks for, scrubbing this configuration's secrets."""
    scrub = Scrubber((settings.smtp_password, settings.secret_key, settings.metrics_token))
    return JsonLines(scrub) if settings.log_format == "json" else TextLines(scrub)


def configure_logging(settings: Settings) -> None:
    """Install (or replace) digestd's one root handler; idempotent, so every entry point may
    call it. Handlers others installed (a test runner's capture) are left in place."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StderrHandler):
            root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(make_formatter(settings))
    root.addHandler(handler)
    level = logging.getLevelName(settings.log_level.upper())
    # Libraries (httpx logs every request at INFO) speak up from WARNING, or everything
    # at debug; digestd's own loggers, and uvicorn's (set by uvicorn), at the chosen level.
    root.setLevel(level if level < logging.INFO else logging.WARNING)
    logging.getLogger("digestd").setLevel(level)
    # APScheduler logs "Running job"/"executed successfully" for every run; the daemon's
    # one line per run says more, so keep only its warnings (missed runs, skipped instances)
    # unless debugging.
    logging.getLogger("apscheduler").setLevel(level if level < logging.INFO else logging.WARNING)
    # aiosmtpd (the demo's mail sink) logs every SMTP command at INFO; the inbound listener
    # (our own server) logs one line per message itself.
    logging.getLogger("mail.log").setLevel(level if level < logging.INFO else logging.WARNING)
    # SQL statements carry parameters (addresses, the generated secret key): never logged.
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
