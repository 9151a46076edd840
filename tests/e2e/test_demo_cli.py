"""`digestd demo` from an empty folder, as `make demo` runs it: mail lands as .eml files."""

from __future__ import annotations

import json
from email import message_from_bytes, policy
from pathlib import Path

from tests.support.cli import run_cli


def test_demo_runs_from_an_empty_folder_and_again(tmp_path: Path) -> None:
    # A DIGESTD_DATABASE_URL in the environment must not be touched by the demo.
    elsewhere = tmp_path / "elsewhere.db"
    env = {"DIGESTD_DATABASE_URL": f"sqlite:///{elsewhere}"}
    first = run_cli("demo", env=env, cwd=tmp_path, timeout=60)
    assert first.returncode == 0, first.stderr
    emls = sorted((tmp_path / "outbox").glob("*.eml"))
    assert len(emls) == 6  # one per subscriber in seeds/subscribers.csv
    assert not elsewhere.exists()
    for path in emls:
        msg = message_from_bytes(path.read_bytes(), policy=policy.default)
        for header in ("From", "To", "Subject", "Date", "Message-ID", "List-Id"):
            assert msg[header], f"{path.name} has no {header}"
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "/unsubscribe/" in msg["List-Unsubscribe"]
        assert "mailto:" not in msg["List-Unsubscribe"]  # nothing would read it in the demo
        assert msg.get_body(("plain",)).get_content().strip()
    assert "ada@example.org" in first.stdout and "sent" in first.stdout
    html = [line for line in first.stdout.splitlines() if line.startswith("open in a browser:")]
    assert html, first.stdout
    page = Path(html[0].split(":", 1)[1].strip())
    assert page.is_file() and "<html" in page.read_text(encoding="utf-8").lower()

    # Run again: a fresh demo database, a new set of six messages (not twelve, not zero).
    second = run_cli("demo", env=env, cwd=tmp_path, timeout=60)
    assert second.returncode == 0, second.stderr
    assert len(sorted((tmp_path / "outbox").glob("*.eml"))) == 6
    ids = {
        message_from_bytes(p.read_bytes(), policy=policy.default)["Message-ID"]
        for p in (tmp_path / "outbox").glob("*.eml")
    }
    assert len(ids) == 6

    # --json for scripts: what each subscriber got, and where the files are.
    third = run_cli("demo", "--json", env=env, cwd=tmp_path, timeout=60)
    assert third.returncode == 0, third.stderr
    report = json.loads(third.stdout)
    assert len(report["subscribers"]) == 6 and len(report["eml_files"]) == 6
    assert {s["status"] for s in report["subscribers"]} == {"sent"}
    assert all(Path(f).is_file() for f in report["eml_files"])
    # The table at 80 columns wraps the top paper between words; --wide keeps it whole.
    top = report["subscribers"][0]["top_paper"]
    wide = run_cli("demo", "--wide", env={**env, "COLUMNS": "80"}, cwd=tmp_path, timeout=60)
    assert any(top in line for line in wide.stdout.splitlines())
