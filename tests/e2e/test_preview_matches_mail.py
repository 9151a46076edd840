"""For the same clock, `digestd preview --format json` shows the papers and subject the mailed
digest carries, dated with the subscriber's LOCAL date (a Tokyo 08:00 digest is sent at
23:00 UTC the day before)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.delivery import deliveries
from tests.support.digests import add_subscriber, load_seed_entries
from tests.support.smtp import SmtpTestServer
from tests.support.subscribers import make_invoke

# 08:00 on Friday 27 November in Tokyo (UTC+9) is 23:00 on Thursday 26 November in UTC.
TOKYO_8AM = datetime(2026, 11, 26, 23, 0, 30, tzinfo=UTC)
EMAIL = "hana@example.jp"


def test_tokyo_8am_preview_and_mail_carry_the_same_papers_and_local_date(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smtp_server: SmtpTestServer
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    ctx = AppContext(Settings(database_url=sqlite_url))
    ctx.migrate()
    with session_scope(ctx.engine) as s:
        load_seed_entries(s, TOKYO_8AM - timedelta(hours=2))
        prefs = {"timezone": "Asia/Tokyo", "send_hour": 8, "topics": "", "max_items": 4}
        add_subscriber(s, EMAIL, TOKYO_8AM - timedelta(days=2), **prefs)
    invoke = make_invoke(
        sqlite_url,
        DIGESTD_SECRET_KEY="tokyo-test-secret-0123456789",
        DIGESTD_SMTP_HOST="127.0.0.1",
        DIGESTD_SMTP_PORT=str(smtp_server.port),
    )
    with time_machine.travel(TOKYO_8AM, tick=False):
        shown = invoke("preview", EMAIL, "--format", "json")
        assert shown.exit_code == 0, shown.output
        sent = invoke("run", "--once", "--no-ingest")
        assert sent.exit_code == 0, sent.output
    preview = json.loads(shown.stdout)

    assert preview["date"] == "2026-11-27" and preview["period"] == "2026-11-27"
    assert preview["subject"] == "Your papers digest — Fri 27 Nov 2026 · 4 papers"
    [mail] = smtp_server.messages
    assert mail.recipients == [EMAIL]
    assert mail.message["Subject"] == preview["subject"]

    try:
        with session_scope(ctx.engine) as s:
            [row] = deliveries.list_deliveries(s)
            carried = deliveries.entry_ids(s, row.id)
    finally:
        ctx.dispose()
    assert row.period == "2026-11-27" and row.status == "sent"
    assert carried == [e["id"] for e in preview["entries"]]
