"""`digestd deliveries list|retry`: a failure shows the server's reply; retry --failed resends
only the failed ones once the server accepts again."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_run_once import prepare
from tests.support.cli import run_cli
from tests.support.smtp import SmtpTestServer


def test_failures_are_listed_with_the_reply_and_retried_on_request(
    sqlite_url: str, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    env = prepare(sqlite_url, smtp_server, ["ok@example.org", "refused@example.org"])
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
    assert "550 5.7.1 policy" in table.stdout and "ok@example.org" in table.stdout
    wide = run_cli("deliveries", "list", "--wide", env=env)
    assert "5.7.1 policy: refused for now" in wide.stdout

    bad = run_cli("deliveries", "list", "--status", "lost", env=env)
    assert bad.returncode == 2 and "--status" in bad.stderr  # usage

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


LONG_REPLY = (
    "550 5.7.1 The message was refused by the policy of this domain; see "
    "https://postmaster.example.net/policies/bulk-mail-and-reputation-requirements for the "
    "requirements and how to ask for a review of your sending reputation"
)


def test_list_fits_80_columns_and_show_gives_everything(
    sqlite_url: str, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    long_address = "someone.with.a.rather.long.address@research-institute.example.org"
    env = prepare(sqlite_url, smtp_server, ["ok@example.org", long_address])
    smtp_server.set_fault(lambda rcpt, _n: LONG_REPLY if rcpt == long_address else None)
    assert run_cli("run", "--once", env=env).returncode == 0

    narrow = run_cli("deliveries", "list", env=env)
    assert narrow.returncode == 0, narrow.stderr
    lines = narrow.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, narrow.stdout
    # Nothing is cut: the long address is whole, so the reply gives way (named below the
    # table) and is read with --wide or `show`.
    [failed_line] = [line for line in lines if " failed " in line]
    assert long_address in failed_line and "…" not in narrow.stdout
    assert "not shown at this width: " in narrow.stdout and "reply" in lines[-2]
    # One subscriber's (named once, by --subscriber): the reply wraps at word boundaries
    # in its own column, every word whole.
    theirs = run_cli("deliveries", "list", "--subscriber", long_address, env=env).stdout
    assert long_address not in theirs and "someone" not in theirs
    assert set(LONG_REPLY.split()) <= set(theirs.split()), theirs
    wide = run_cli("deliveries", "list", "--wide", env={**env, "COLUMNS": "400"})
    assert LONG_REPLY in wide.stdout and long_address in wide.stdout

    listed = json.loads(run_cli("deliveries", "list", "--json", env=env).stdout)
    ids = {d["email"]: d["id"] for d in listed}
    shown = run_cli("deliveries", "show", str(ids["ok@example.org"]), "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    sent = json.loads(shown.stdout)
    [mail] = [m.message for m in smtp_server.messages]
    assert sent["message_id"] == mail["Message-ID"]
    assert (sent["status"], sent["attempts"], sent["error"]) == ("sent", 1, None)
    titles = [p["title"] for p in sent["papers"]]
    assert titles and all(title in mail.get_body(("plain",)).get_content() for title in titles)
    assert [p["rank"] for p in sent["papers"]] == list(range(len(titles)))

    table = run_cli("deliveries", "show", str(ids["ok@example.org"]), env=env).stdout
    assert mail["Message-ID"] in table and titles[0] in table and "papers (" in table
    failed = run_cli("deliveries", "show", str(ids[long_address]), env={**env, "COLUMNS": "80"})
    # the whole reply, wrapped at word boundaries (a long URL stays whole)
    assert "".join(failed.stdout.split()).count("".join(LONG_REPLY.split())) == 1
    assert "papers: none recorded" in failed.stdout
    missing = run_cli("deliveries", "show", "999", env=env)
    assert missing.returncode == 1 and "no delivery 999" in missing.stderr
