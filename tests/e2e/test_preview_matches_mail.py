"""For the same clock, `digestd preview` shows the digest the mail carries: its papers and
subject, dated with the subscriber's LOCAL date (a Tokyo 08:00 digest is sent at 23:00 UTC
the day before), and for a digest waiting for its retry, the very message the retry sends."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
import time_machine

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Entry
from digestd.delivery import deliveries
from digestd.subscribers import vote_store as votes
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
    assert preview["subject"] == "DR-Tune, and 3 more papers · Fri 27 Nov"
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


# A voter whose digest was refused with a 4xx at 08:00 and retried 40 minutes later, after
# papers on their subject arrived (outside the digest's window).
FIRST_TRY = datetime(2026, 11, 26, 8, 0, 30, tzinfo=UTC)
RETRY = FIRST_TRY + timedelta(minutes=40)
VOTER = "vera@example.org"
LIKED = ("Mechanistic Interpretation through Contextual Decomposition", "Does Circuit Analysis")


def _parts(message: EmailMessage) -> tuple[str, str]:
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content().replace("\r\n", "\n"), html.get_content().replace("\r\n", "\n")


def test_a_voters_retried_digest_equals_its_preview(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smtp_server: SmtpTestServer
) -> None:
    """`digestd preview` shows the digest waiting for its retry, built by the mail's own path:
    same window (not one up to now), votes faded to the same instant, same papers, reasons,
    signed links and vote links, byte for byte in both parts."""
    monkeypatch.chdir(tmp_path)
    ctx = AppContext(Settings(database_url=db_url))
    ctx.migrate()
    try:
        with session_scope(ctx.engine) as s:
            entries = load_seed_entries(s, FIRST_TRY - timedelta(hours=2))
            liked = [e for e in entries if e.title.startswith(LIKED)]
            for e in liked:  # voted on in an earlier digest
                e.ingested_at = e.published_at = FIRST_TRY - timedelta(days=2)
                s.add(e)
            voter = add_subscriber(
                s, VOTER, FIRST_TRY - timedelta(days=10), topics="models", max_items=5, send_hour=8
            )
            for e in liked:
                assert voter.id is not None and e.id is not None
                votes.cast(s, voter.id, e.id, votes.UP, now=FIRST_TRY - timedelta(days=1))
        invoke = make_invoke(
            db_url,
            DIGESTD_SECRET_KEY="retry-test-secret-0123456789",
            DIGESTD_SMTP_HOST="127.0.0.1",
            DIGESTD_SMTP_PORT=str(smtp_server.port),
            DIGESTD_BASE_URL="https://digest.example.org",
        )
        smtp_server.set_fault(lambda _rcpt, _n: "451 4.3.0 try again later")
        with time_machine.travel(FIRST_TRY, tick=False):
            assert invoke("run", "--once", "--no-ingest").exit_code == 0
        with session_scope(ctx.engine) as s:
            [row] = deliveries.list_deliveries(s)
            assert (row.status, row.severity) == ("retry", "soft")
            # Papers on the voter's subject arrive after the digest's window closed.
            for i in range(3):
                s.add(
                    Entry(
                        canonical_key=f"late:{i}",
                        url=f"https://papers.example.org/late/{i}",
                        title=f"Mechanistic interpretability of language models, part {i}",
                        summary="Circuits in transformer models, found by mechanistic analysis.",
                        authors=["A. Author"],
                        upvotes=500,
                        published_at=FIRST_TRY + timedelta(minutes=20),
                        ingested_at=FIRST_TRY + timedelta(minutes=20),
                    )
                )
        smtp_server.set_fault(None)
        with time_machine.travel(RETRY, tick=False):
            shown = invoke("preview", VOTER, "--format", "eml")
            as_json = invoke("preview", VOTER, "--format", "json")
            assert shown.exit_code == as_json.exit_code == 0, shown.output
            sent = invoke("run", "--once", "--no-ingest")
            assert sent.exit_code == 0, sent.output
        [mail] = smtp_server.messages  # the first try was refused at RCPT
        previewed = message_from_bytes(shown.stdout_bytes, policy=policy.default)
        assert isinstance(previewed, EmailMessage)
        for header in ("Subject", "Message-ID", "From", "To", "Date", "List-Unsubscribe"):
            assert previewed[header] == mail.message[header], header
        assert _parts(previewed) == _parts(mail.message)
        doc = json.loads(as_json.stdout)
        assert doc["delivery"]["id"] == row.id and doc["window"]["end"] == FIRST_TRY.isoformat()
        assert not any(
            e["title"].startswith("Mechanistic interpretability of language")
            for e in doc["entries"]
        )
        assert any("you liked" in e["reason"] for e in doc["entries"])  # ranked by the votes
        with session_scope(ctx.engine) as s:
            [row] = deliveries.list_deliveries(s)
            assert row.status == "sent"
            assert deliveries.entry_ids(s, row.id) == [e["id"] for e in doc["entries"]]
    finally:
        ctx.dispose()
