"""`digestd deliveries list|retry`: a failure shows the server's reply; retry --failed resends
only the failed ones once the server accepts again."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_run_once import prepare
from tests.support.cli import run_cli
from tests.support.smtp import SmtpTestServer


def test_failures_are_listed_with_the_reply_and_retried_on_request(
    tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    env = prepare(tmp_path, smtp_server, ["ok@example.org", "refused@example.org"])
    smtp_server.set_fault(
        lambda rcpt, _n: "550 5.7.1 policy: refused for now" if "refused" in rcpt else None
    )
    assert run_cli("run", "--once", env=env).returncode == 0

    listed = run_cli("deliveries", "list", "--status", "failed", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    [failed] = json.loads(listed.stdout)
    assert failed["email"] == "refused@example.org"
    assert failed["error"] == "550 5.7.1 policy: refused for now"
    table = run_cli("deliveries", "list", env=env)
    assert "5.7.1 policy: refused for now" in table.stdout and "ok@example.org" in table.stdout

    bad = run_cli("deliveries", "list", "--status", "lost", env=env)
    assert bad.returncode == 1 and "--status" in bad.stderr

    smtp_server.set_fault(None)
    retried = run_cli("deliveries", "retry", "--failed", env=env)
    assert retried.returncode == 0, retried.stderr
    assert "rescheduled 1 failed" in retried.stdout and "sent 1" in retried.stdout
    assert sorted(m.recipients[0] for m in smtp_server.messages) == [
        "ok@example.org",
        "refused@example.org",
    ]
    everything = json.loads(run_cli("deliveries", "list", "--json", env=env).stdout)
    assert {d["status"] for d in everything} == {"sent"}
