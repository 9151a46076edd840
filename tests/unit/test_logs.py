"""Log lines: JSON is one object per line (tracebacks included), text stays readable, and
neither carries an address or a configured secret."""

from __future__ import annotations

import json
import logging

from digestd.core.config import Settings
from digestd.core.logs import make_formatter

SECRET = "smtp-password-0123456789"


def record(message: str, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError(f"relay said no to ada@example.org with {SECRET}")
        except RuntimeError:
            import sys

            exc_info = sys.exc_info()
    rec = logging.LogRecord(
        "digestd.delivery.sending", logging.ERROR, __file__, 1, message, args, exc_info
    )
    rec.__dict__.update(extra)
    return rec


def test_json_line_has_the_fields_and_no_address_or_secret() -> None:
    settings = Settings(log_format="json", smtp_username="u", smtp_password=SECRET)
    line = make_formatter(settings).format(
        record("sending delivery %s failed", 7, exc=True, delivery_id=7, subscriber_id=3)
    )
    assert "\n" not in line
    data = json.loads(line)
    assert data["level"] == "ERROR" and data["logger"] == "digestd.delivery.sending"
    assert data["message"] == "sending delivery 7 failed"
    assert (data["delivery_id"], data["subscriber_id"]) == (7, 3)
    assert data["time"].endswith("+00:00")
    assert "RuntimeError" in data["exc_info"]
    assert "ada@example.org" not in line and SECRET not in line
    assert "<address>" in line and "********" in line
    assert "taskName" not in data and "color_message" not in data


def test_text_line_is_scrubbed_too() -> None:
    settings = Settings(smtp_username="u", smtp_password=SECRET)
    line = make_formatter(settings).format(record("reply 550 <bob@example.net> %s", SECRET))
    assert line.endswith("ERROR digestd.delivery.sending reply 550 <<address>> ********")
