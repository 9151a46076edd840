"""The whole loop: digests go out with VERP and a signed mailto:, and what comes back acts.

`digestd run --once` sends to a real SMTP server that records the envelope; then bounces,
a complaint, an unsubscribe by mail, a tampered token and an auto-reply, built from the
messages that were actually sent, go through `digestd inbound` as an MTA pipe would run it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from digestd.core.config import Settings
from digestd.inbound.addresses import is_ours
from tests.e2e.test_run_once import prepare
from tests.support.cli import run_cli
from tests.support.inbound import BOUNCE_ADDRESS, arf, auto_reply, dsn, plain
from tests.support.smtp import SmtpTestServer

PEOPLE = ["bounce@example.org", "complain@example.org", "leave@example.org", "stay@example.org"]


def test_what_comes_back_acts_on_the_right_subscriber(
    sqlite_url: str, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    env = prepare(sqlite_url, smtp_server, PEOPLE)
    env["DIGESTD_FROM"] = "Paper digest <digest@example.net>"
    env["DIGESTD_BOUNCE_ADDRESS"] = BOUNCE_ADDRESS
    sent = run_cli("run", "--once", env=env, cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    by_rcpt = {m.recipients[0]: m for m in smtp_server.messages}
    assert sorted(by_rcpt) == sorted(PEOPLE)

    settings = Settings(bounce_address=BOUNCE_ADDRESS)
    verps = {to: m.envelope_from.strip("<>") for to, m in by_rcpt.items()}
    assert len(set(verps.values())) == len(PEOPLE)  # one per delivery
    for to, m in by_rcpt.items():
        assert is_ours(settings, verps[to]) and verps[to].startswith("bounces+d")
        msg = m.message
        https, mailto = [u.strip(" <>") for u in msg["List-Unsubscribe"].split(",")]
        assert https.startswith("https://digest.example.net/unsubscribe/")
        assert re.fullmatch(
            r"mailto:bounces\+u[0-9a-z]+-[a-z2-7]{16}@bounce\.example\.org\?subject=unsubscribe",
            mailto,
        )
        assert msg["List-Help"] == "<mailto:bounces+request@bounce.example.org?subject=help>"
        assert (
            "mailto:bounces+request@bounce.example.org?subject=subscribe" in msg["List-Subscribe"]
        )

    def headers_of(to: str) -> str:
        return by_rcpt[to].data.decode().split("\r\n\r\n", 1)[0].replace("\r\n", "\n")

    stay_verp = verps["stay@example.org"]
    tampered = stay_verp[:-25] + ("a" if stay_verp[-25] != "a" else "b") + stay_verp[-24:]
    leave_mailto = by_rcpt["leave@example.org"].message["List-Unsubscribe"].split("<mailto:")[1]
    leave_address = leave_mailto.split("?")[0]
    messages = {
        # A DSN built from the message that was sent, to its VERP envelope sender.
        "bounce.eml": dsn(
            to=verps["bounce@example.org"],
            recipient="bounce@example.org",
            original_headers=headers_of("bounce@example.org"),
        ),
        "complaint.eml": arf(
            to=BOUNCE_ADDRESS,
            recipient="complain@example.org",
            original_headers=headers_of("complain@example.org"),
        ),
        "unsubscribe.eml": plain(
            sender="leave@example.org", to=leave_address, subject="unsubscribe"
        ),
        "tampered.eml": dsn(to=tampered, recipient="stay@example.org"),
        "vacation.eml": auto_reply(to=stay_verp, sender="stay@example.org"),
    }
    for name, raw in messages.items():
        (tmp_path / name).write_bytes(raw)
    files = [str(tmp_path / name) for name in messages]
    result = run_cli("inbound", *files, env=env)
    assert result.returncode == 0, result.stderr

    listed = run_cli("subscribers", "list", "--json", env=env)
    status = {s["email"]: s["status"] for s in json.loads(listed.stdout)}
    assert status == {
        "bounce@example.org": "bounced",
        "complain@example.org": "unsubscribed",
        "leave@example.org": "unsubscribed",
        "stay@example.org": "active",
    }
    inbound = json.loads(run_cli("inbound", "list", "--json", env=env).stdout)
    kinds = {Path(r["source"]).name: (r["kind"], r["subscriber"]) for r in inbound}
    assert kinds == {
        "bounce.eml": ("bounce", "bounce@example.org"),
        "complaint.eml": ("complaint", "complain@example.org"),
        "unsubscribe.eml": ("unsubscribe", "leave@example.org"),
        "tampered.eml": ("bounce", None),
        "vacation.eml": ("auto_reply", "stay@example.org"),
    }

    # Suppressed: the complained address gets no mail, not even a confirmation.
    before = len(smtp_server.messages)
    again = run_cli("send-now", "--all", env=env)
    assert again.returncode == 0, again.stderr
    assert [m.recipients for m in smtp_server.messages[before:]] in ([], [["stay@example.org"]])
