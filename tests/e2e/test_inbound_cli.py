"""`digestd inbound` as an MTA pipe and a script run it: files, stdin, --dry-run --json, list.

The pipe and the unreachable database run the real command in a subprocess; the rest run
the same CLI in-process (a subprocess costs seconds on a loaded machine)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from digestd.core.db import make_engine, session_scope
from digestd.core.models import Delivery
from digestd.subscribers.preferences import Preferences
from tests.support.cli import run_cli_process
from tests.support.inbound import BOUNCE_ADDRESS, arf, auto_reply, dsn
from tests.support.subscribers import Invoke, add_subscriber, make_invoke

BOUNCES = Path(__file__).resolve().parents[1] / "fixtures" / "bounces"
# The Message-ID of the digest ada was sent (what a real bounce of it carries back).
SENT_ID = "<digest.2026-11-26.1.5eed0fa11ade@example.org>"
RETURNED = f"Message-ID: {SENT_ID}\nTo: ada@example.net\nSubject: digest\n"


def _env(url: str) -> dict[str, str]:
    """A migrated database (sqlite_url) with ada's digest sent; the CLI env."""
    engine = make_engine(url)
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    with session_scope(engine) as session:
        sub = add_subscriber(
            session, "ada@example.net", Preferences(), status="active", actor="t", now=now
        )
        assert sub.id is not None
        session.add(
            Delivery(
                subscriber_id=sub.id,
                period="2026-11-26",
                status="sent",
                message_id=SENT_ID,
                created_at=now,
                sent_at=now,
            )
        )
    engine.dispose()
    return {
        "DIGESTD_DATABASE_URL": url,
        "DIGESTD_SECRET_KEY": "e2e-secret-key-0123456789",
        "DIGESTD_BOUNCE_ADDRESS": BOUNCE_ADDRESS,
    }


def _invoke(env: dict[str, str]) -> Invoke:
    extra = {k: v for k, v in env.items() if k != "DIGESTD_DATABASE_URL"}
    return make_invoke(env["DIGESTD_DATABASE_URL"], **extra)


def test_dry_run_json_is_the_contract_in_input_order(sqlite_url: str, tmp_path: Path) -> None:
    env = _env(sqlite_url)
    files = []
    for i, raw in enumerate(
        [
            dsn(to=BOUNCE_ADDRESS, recipient="ada@example.net"),
            arf(to=BOUNCE_ADDRESS, recipient="ada@example.net"),
            auto_reply(to=BOUNCE_ADDRESS, sender="ada@example.net"),
            dsn(to=BOUNCE_ADDRESS, recipient="ada@example.net", original_headers=RETURNED),
        ]
    ):
        path = tmp_path / f"{i}.eml"
        path.write_bytes(raw)
        files.append(str(path))
    shutil.copy(BOUNCES / "sisimai" / "rfc3464-01.eml", tmp_path / "4.eml")
    files.append(str(tmp_path / "4.eml"))
    invoke = _invoke(env)
    result = invoke("inbound", "--dry-run", "--json", *files)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [o["file"] for o in out] == files
    assert [o["kind"] for o in out] == ["bounce", "complaint", "auto_reply", "bounce", "bounce"]
    for o in out:
        assert set(o) == {"file", "kind", "recipients", "subscriber", "delivery", "evidence"}
    assert out[0]["recipients"] == [
        {
            "address": "ada@example.net",
            "status": "5.1.1",
            "action": "failed",
            "hard": True,
            "reason": "userunknown",
        }
    ]
    # An address alone is not evidence (anyone can write one); our Message-ID for it is.
    assert [(o["subscriber"], o["evidence"]) for o in out] == [
        (None, None),
        (None, None),
        (None, None),
        ("ada@example.net", "message-id"),
        (None, None),
    ]
    assert out[3]["delivery"] == 1 and out[3]["recipients"] == out[0]["recipients"]
    # Nothing changed and nothing was recorded.
    assert json.loads(invoke("inbound", "list", "--json").stdout) == []
    shown = invoke("subscribers", "show", "ada@example.net", "--json")
    assert json.loads(shown.stdout)["subscriber"]["status"] == "active"


def test_pipe_records_then_list_shows_it(sqlite_url: str, tmp_path: Path) -> None:
    env = _env(sqlite_url)
    raw = dsn(to=BOUNCE_ADDRESS, recipient="ada@example.net", original_headers=RETURNED).decode()
    piped = run_cli_process("inbound", "--rcpt-to", BOUNCE_ADDRESS, env=env, input=raw)
    assert piped.returncode == 0, piped.stderr
    assert "bounce #1" in piped.stdout and "bounced" in piped.stdout
    invoke = _invoke(env)
    junk = invoke("inbound", "-", input="\x00\x01 not mail at all")
    assert junk.exit_code == 0 and "unrecognized #2" in junk.stdout
    listed = json.loads(invoke("inbound", "list", "--kind", "bounce", "--json").stdout)
    assert [(r["kind"], r["subscriber"], r["status"], r["evidence"]) for r in listed] == [
        ("bounce", "ada@example.net", "5.1.1", "message-id")
    ]
    table = invoke("inbound", "list")
    assert "unrecognized" in table.stdout and "ada@example.net" in table.stdout
    lifted = invoke("subscribers", "lift", "ada@example.net")
    assert lifted.exit_code == 0 and "now active" in lifted.stdout


def test_a_forged_report_is_listed_with_no_evidence_and_changes_nothing(
    sqlite_url: str, tmp_path: Path
) -> None:
    invoke = _invoke(_env(sqlite_url))
    forged = tmp_path / "forged.eml"
    forged.write_bytes(dsn(to=BOUNCE_ADDRESS, recipient="ada@example.net"))
    done = invoke("inbound", "--rcpt-to", BOUNCE_ADDRESS, str(forged))
    assert done.exit_code == 0 and "no evidence: nothing changed" in done.stdout
    listed = json.loads(invoke("inbound", "list", "--json").stdout)
    assert [(r["kind"], r["subscriber"], r["address"], r["evidence"]) for r in listed] == [
        ("bounce", None, "ada@example.net", None)
    ]
    assert "no evidence" in " ".join(invoke("inbound", "list").stdout.split())
    shown = invoke("subscribers", "show", "ada@example.net", "--json")
    assert json.loads(shown.stdout)["subscriber"]["status"] == "active"


def test_bad_input_is_one_line(sqlite_url: str, tmp_path: Path) -> None:
    invoke = _invoke(_env(sqlite_url))
    missing = invoke("inbound", str(tmp_path / "nope.eml"))
    assert missing.exit_code == 1 and "nope.eml" in missing.stderr
    kind = invoke("inbound", "list", "--kind", "spam")
    assert kind.exit_code == 2 and len(kind.stderr.strip().splitlines()) == 1  # usage


def test_an_unreachable_database_asks_the_mta_to_retry(tmp_path: Path) -> None:
    env = {
        "DIGESTD_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "DIGESTD_BOUNCE_ADDRESS": BOUNCE_ADDRESS,
    }
    result = run_cli_process("inbound", "-", env=env, input="Subject: x\n\nbody\n")
    assert result.returncode == 75, result.stderr  # EX_TEMPFAIL: the MTA keeps it and retries
    assert "Traceback" not in result.stderr and "try again later" in result.stderr
