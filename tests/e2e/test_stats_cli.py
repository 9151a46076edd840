"""`digestd stats`: after a real send run (real SMTP server refusing some recipients), a bounce
and a complaint that come back through `digestd inbound`, an unsubscribe by mail, real
one-click and page unsubscribes over HTTP and an admin's removal, the figures match."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from digestd.core.config import Settings
from digestd.core.context import AppContext
from tests.e2e.test_run_once import SECRET, prepare
from tests.support.cli import run_cli
from tests.support.inbound import BOUNCE_ADDRESS, arf, dsn, plain
from tests.support.smtp import SmtpTestServer
from tests.support.web import running_web

EMAILS = ["ok1@example.org", "ok2@example.org", "ok3@example.org"]
HARD = "gone@example.org"  # refused during the SMTP conversation
SOFT = "full@example.org"
LATE = "late@example.org"  # accepted, then a bounce comes back
ANGRY = "angry@example.org"  # accepted, then a spam complaint comes back
MAILER = "mailer@example.org"  # unsubscribes by mail


def _fault(rcpt: str, _n: int) -> str | None:
    if rcpt == HARD:
        return "550 5.1.1 no such user"
    if rcpt == SOFT:
        return "452 4.2.2 mailbox full"
    return None


def test_stats_match_a_send_run_with_bounces_and_unsubscribes(
    sqlite_url: str, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    # Hour 0 UTC: the digests are due today whenever the test runs. Failures count on the
    # day a digest was due, and with the default hour (8) a run between midnight and 08:00
    # UTC found them on yesterday's line.
    env = prepare(
        sqlite_url,
        smtp_server,
        [*EMAILS, HARD, SOFT, LATE, ANGRY, MAILER],
        send_hour=0,
        timezone="UTC",
    )
    env.update(DIGESTD_BOUNCE_ADDRESS=BOUNCE_ADDRESS, DIGESTD_FROM="Digest <digest@example.net>")
    joined = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
    smtp_server.set_fault(_fault)
    run = run_cli("run", "--once", "--no-ingest", env=env)
    assert run.returncode == 0, run.stderr
    assert "sent 6" in run.stdout

    # What comes back, built from the messages that were sent, through `digestd inbound`.
    by_rcpt = {m.recipients[0]: m for m in smtp_server.messages}

    def headers_of(to: str) -> str:
        return by_rcpt[to].data.decode().split("\r\n\r\n", 1)[0].replace("\r\n", "\n")

    mailto = by_rcpt[MAILER].message["List-Unsubscribe"].split("<mailto:")[1].split("?")[0]
    came_back = {
        "late.eml": dsn(
            to=by_rcpt[LATE].envelope_from.strip("<>"),
            recipient=LATE,
            original_headers=headers_of(LATE),
        ),
        "angry.eml": arf(to=BOUNCE_ADDRESS, recipient=ANGRY, original_headers=headers_of(ANGRY)),
        "mailer.eml": plain(sender=MAILER, to=mailto, subject="unsubscribe"),
    }
    for name, raw in came_back.items():
        (tmp_path / name).write_bytes(raw)
    inbound = run_cli("inbound", *(str(tmp_path / name) for name in came_back), env=env)
    assert inbound.returncode == 0, inbound.stderr

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
        "sent": 6,
        "skipped": 0,
        "failed": 1,
        "hard_bounces": 2,
        "soft_bounces": 1,
        "relay_failures": 0,
        "unmatched_bounces": 0,
        "complaints": 1,
        "unsubscribes": {"one-click": 1, "page": 1, "mail": 1, "admin": 1, "complaint": 1},
        "new_confirmed": 0,
    }
    assert by_day[joined]["new_confirmed"] == 8
    assert figures["totals"]["sent"] == 6 and figures["totals"]["new_confirmed"] == 8
    assert figures["subscribers"] == {
        "active": 1,
        "pending": 0,
        "unsubscribed": 5,
        "bounced": 2,
        "suspended": 0,
    }
    assert figures["rates"]["bounces"] == {
        "count": 2,
        "of": 7,
        "rate": round(2 / 7, 6),
        "limit": 0.02,
        "aim": None,
        "level": "over",
    }
    assert figures["rates"]["complaints"] == {
        "count": 1,
        "of": 6,
        "rate": round(1 / 6, 6),
        "limit": 0.003,
        "aim": 0.001,
        "level": "over",
    }
    assert figures["warnings"] == [
        "complaint rate 16.67 % is over the 0.30 % limit: mailbox providers may reject or "
        "junk your mail",
        "bounce rate 28.57 % is over the 2.00 % limit: mailbox providers may reject or junk "
        "your mail",
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
    assert sent_line.endswith(" 6") and "█" in sent_line
    warning = next(i for i, line in enumerate(lines) if line.startswith("warning: bounce"))
    assert (
        " ".join(lines[warning : warning + 2]).split()
        == ("warning: " + figures["warnings"][1]).split()
    )
    assert any(f"{SOFT}, " in line and "452 4.2.2 mailbox full" in line for line in lines)
    # `deliveries show` has the bounce that came back for the late one
    listed = json.loads(run_cli("deliveries", "list", "--json", env=env).stdout)
    [late_id] = [d["id"] for d in listed if d["email"] == LATE]
    shown = json.loads(run_cli("deliveries", "show", str(late_id), "--json", env=env).stdout)
    [back] = shown["inbound"]
    assert (back["kind"], back["severity"], back["status"]) == ("bounce", "hard", "5.1.1")
    text = run_cli("deliveries", "show", str(late_id), env=env).stdout
    assert "came back (inbound mail)" in text and "5.1.1 hard" in text

    wide = run_cli("stats", "--days", "120", env={**env, "COLUMNS": "200"})
    assert max(len(line) for line in wide.stdout.splitlines()) <= 80
