"""`digestd run --once` and `digestd send-now` as an admin (or cron) runs them, against a
real SMTP server; the messages that arrive are parsed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from digestd.core.db import make_engine, session_scope
from tests.support.cli import run_cli
from tests.support.digests import add_subscriber
from tests.support.sending import add_papers
from tests.support.smtp import SmtpTestServer

SECRET = "e2e-secret-key-0123456789"


def prepare(url: str, smtp: SmtpTestServer, emails: list[str], **prefs) -> dict[str, str]:
    """A database with due subscribers (joined days ago) and fresh papers; the CLI env."""
    engine = make_engine(url)
    now = datetime.now(UTC)
    with session_scope(engine) as s:
        add_papers(s, now - timedelta(hours=1))
        for e in emails:
            add_subscriber(s, e, now - timedelta(days=3), **prefs)
    engine.dispose()
    return {
        "DIGESTD_DATABASE_URL": url,
        "DIGESTD_SMTP_PORT": str(smtp.port),
        "DIGESTD_SECRET_KEY": SECRET,
        "DIGESTD_BASE_URL": "https://digest.example.net",
    }


def test_run_once_sends_what_is_due_and_nothing_on_the_second_run(
    sqlite_url: str, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    env = prepare(sqlite_url, smtp_server, ["a@example.org", "b@example.org"])
    first = run_cli("run", "--once", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "sent 2" in first.stdout
    assert sorted(m.recipients[0] for m in smtp_server.messages) == [
        "a@example.org",
        "b@example.org",
    ]
    msg = smtp_server.messages[0].message
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Unsubscribe"].startswith("<https://digest.example.net/unsubscribe/")

    second = run_cli("run", "--once", env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "planned 0" in second.stdout and "sent 0" in second.stdout
    assert len(smtp_server.messages) == 2


def test_send_now_ignores_the_hour_for_the_given_addresses(
    sqlite_url: str, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    hour = (datetime.now(UTC) + timedelta(hours=12)).hour  # far from now: not due
    env = prepare(sqlite_url, smtp_server, ["x@example.org", "y@example.org"], send_hour=hour)
    # Joined long ago, so yesterday's hour is owed: make them joined just now instead.
    engine = make_engine(env["DIGESTD_DATABASE_URL"])
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE subscriber SET confirmed_at = CURRENT_TIMESTAMP")
    engine.dispose()
    nothing = run_cli("run", "--once", env=env)
    assert "sent 0" in nothing.stdout and smtp_server.messages == []

    result = run_cli("send-now", "X@Example.org", env=env)
    assert result.returncode == 0, result.stderr
    assert [m.recipients for m in smtp_server.messages] == [["x@example.org"]]

    unknown = run_cli("send-now", "nobody@example.org", env=env)
    assert unknown.returncode == 1 and "nobody@example.org" in unknown.stderr

    everyone = run_cli("send-now", "--all", env=env)
    assert everyone.returncode == 0, everyone.stderr
    assert sorted(m.recipients[0] for m in smtp_server.messages) == [
        "x@example.org",
        "y@example.org",
    ]  # x is not sent twice for the same period
