"""`digestd stats`: after a real send run (real SMTP server refusing some recipients), a real
one-click unsubscribe over HTTP and an admin's removal, the figures match what happened."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from digestd.config import Settings
from digestd.context import AppContext
from tests.e2e.test_run_once import SECRET, prepare
from tests.support.cli import run_cli
from tests.support.smtp import SmtpTestServer
from tests.support.web import running_web

EMAILS = ["ok1@example.org", "ok2@example.org", "ok3@example.org"]
HARD = "gone@example.org"
SOFT = "full@example.org"


def _fault(rcpt: str, _n: int) -> str | None:
    if rcpt == HARD:
        return "550 5.1.1 no such user"
    if rcpt == SOFT:
        return "452 4.2.2 mailbox full"
    return None


def test_stats_match_a_send_run_with_bounces_and_unsubscribes(
    tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    env = prepare(tmp_path, smtp_server, [*EMAILS, HARD, SOFT])
    joined = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
    smtp_server.set_fault(_fault)
    run = run_cli("run", "--once", "--no-ingest", env=env)
    assert run.returncode == 0, run.stderr
    assert "sent 3" in run.stdout

    # ok1 leaves with the one-click POST of its mail's List-Unsubscribe header (RFC 8058),
    # sent to a real web server on the same database; ok2 is removed by an admin;
    # ok3 leaves with the button of the unsubscribe page (the same POST, marked as the page's).
    def path_of(email: str) -> str:
        [mail] = [m for m in smtp_server.messages if m.recipients == [email]]
        return urlsplit(mail.message["List-Unsubscribe"].split(",")[0].strip(" <>")).path

    ctx = AppContext(Settings(database_url=env["DIGESTD_DATABASE_URL"], secret_key=SECRET))
    try:
        with running_web(ctx, smtp_server) as web:
            for email, body in (
                ("ok1@example.org", b"List-Unsubscribe=One-Click"),
                ("ok3@example.org", b"List-Unsubscribe=One-Click&via=page"),
            ):
                answer = httpx.post(
                    web.base_url + path_of(email),
                    content=body,
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                    timeout=10,
                )
                assert answer.status_code == 200
    finally:
        ctx.dispose()
    assert run_cli("subscribers", "remove", "ok2@example.org", env=env).returncode == 0
    # the soft-bounced digest is due again now: the oldest delivery still waiting
    assert run_cli("deliveries", "retry", "--no-send", env=env).returncode == 0

    result = run_cli("stats", "--days", "7", "--json", env=env)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    today = datetime.now(UTC).date().isoformat()
    by_day = {d["date"]: d for d in figures["daily"]}
    assert len(by_day) == 7 and figures["period"]["end"] == today
    assert by_day[today] == {
        "date": today,
        "sent": 3,
        "skipped": 0,
        "failed": 1,
        "hard_bounces": 1,
        "soft_bounces": 1,
        "complaints": 0,
        "unsubscribes": {"one-click": 1, "page": 1, "mail": 0, "admin": 1, "complaint": 0},
        "new_confirmed": 0,
    }
    assert by_day[joined]["new_confirmed"] == 5
    assert figures["totals"]["sent"] == 3 and figures["totals"]["new_confirmed"] == 5
    assert figures["subscribers"] == {
        "active": 2,
        "pending": 0,
        "unsubscribed": 3,
        "bounced": 0,
        "suspended": 0,
    }
    assert figures["rates"]["bounces"] == {
        "count": 1,
        "of": 4,
        "rate": 0.25,
        "limit": 0.02,
        "aim": None,
        "level": "over",
    }
    assert figures["rates"]["complaints"]["of"] == 3
    assert figures["rates"]["complaints"]["level"] == "ok"
    assert figures["warnings"] == [
        "bounce rate 25.00 % is over the 2.00 % limit: mailbox providers may reject or junk "
        "your mail"
    ]
    oldest = figures["oldest_due"]
    assert (oldest["email"], oldest["status"], oldest["attempts"]) == (SOFT, "retry", 1)
    assert oldest["error"] == "452 4.2.2 mailbox full"

    # The dashboard draws the same figures in 80 columns.
    drawn = run_cli("stats", "--days", "7", env=env)
    assert drawn.returncode == 0, drawn.stderr
    lines = drawn.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    sent_line = next(line for line in lines if line.lstrip().startswith("digests sent"))
    assert sent_line.endswith(" 3") and "█" in sent_line
    warning = next(i for i, line in enumerate(lines) if line.startswith("warning: bounce"))
    assert (
        " ".join(lines[warning : warning + 2]).split()
        == ("warning: " + figures["warnings"][0]).split()
    )
    assert any(f"{SOFT}, " in line and "452 4.2.2 mailbox full" in line for line in lines)
    wide = run_cli("stats", "--days", "120", env={**env, "COLUMNS": "200"})
    assert max(len(line) for line in wide.stdout.splitlines()) <= 80
