"""The admin's view: `digestd sources …` and `digestd entries list`, run as an admin types them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.support.cli import run_cli
from tests.support.feeds import FIXTURES, Reply, feed_server

ARXIV_RSS = "arxiv-rss/current/rss_cs.CL_2026-04-27_trimmed.xml"


def test_add_fetch_list_entries_remove(sqlite_url: str, tmp_path: Path) -> None:
    env = {"DIGESTD_DATABASE_URL": sqlite_url, "DIGESTD_FETCH_TIMEOUT": "60"}
    shutil.copy(FIXTURES / ARXIV_RSS, tmp_path / "cs.CL.xml")

    added = run_cli("sources", "add", "cs.CL.xml", "--name", "arXiv cs.CL", env=env, cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    assert f"added source #1: {(tmp_path / 'cs.CL.xml').as_uri()}" in " ".join(added.stdout.split())

    bad = run_cli("sources", "add", "cs.CL.xml", "--kind", "atom", env=env, cwd=tmp_path)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        "error: unknown kind 'atom' (choose from auto, rss, arxiv_api, hf_daily, jsonfeed)"
    ]
    assert run_cli("sources", "fetch", "7", env=env).stderr.strip() == "error: no source with id 7"

    with feed_server() as server:
        down = server.serve("/down", Reply(status=500))
        run_cli("sources", "add", down, "--allow-private", env=env)  # 127.0.0.1
        fetched = run_cli("sources", "fetch", env=env, cwd=tmp_path)
    assert fetched.returncode == 0, fetched.stderr  # one failed source is reported, not fatal
    assert "1 of 2 source(s) failed (#2)" in fetched.stderr
    assert "arXiv cs.CL" in fetched.stdout and "HTTP 500" in fetched.stdout

    listed = json.loads(run_cli("sources", "list", "--json", env=env).stdout)
    health = {s["id"]: s for s in listed}
    assert health[1]["last_status"] == "ok" and health[1]["failures"] == 0
    assert health[1]["last_counts"] == {"new": 3, "updated": 0, "unchanged": 0, "rejected": 0}
    assert health[2]["last_status"] == "error" and health[2]["failures"] == 1
    assert health[2]["last_error"].startswith("HTTP 500")
    assert health[1]["format"] == "rss" and health[1]["kind"] == "auto"
    assert health[1]["entries_7d"] == 3 and health[1]["last_success_at"]
    assert health[2]["format"] is None and health[2]["last_success_at"] is None
    table = run_cli("sources", "list", env=env).stdout
    row = next(line.split() for line in table.splitlines() if line.split()[:1] == ["1"])
    assert row[:4] == ["1", "ok", "rss", "3"], table
    assert "error" in table and "#2 HTTP 500" in table  # the last errors, under the table

    shown = json.loads(run_cli("entries", "list", "--source", "1", "--json", env=env).stdout)
    # Same publication time: newest id first.
    assert [e["canonical_key"] for e in shown] == [
        "arxiv:2604.22038", "arxiv:2604.22027", "arxiv:2604.22002"
    ]  # fmt: skip
    assert shown[0]["authors"] and shown[0]["categories"]
    later = run_cli("entries", "list", "--since", "2026-05-01", "--json", env=env)
    assert json.loads(later.stdout) == []
    wrong = run_cli("entries", "list", "--since", "last tuesday", env=env)
    assert wrong.returncode == 2 and "--since must be a date" in wrong.stderr  # usage

    removed = run_cli("sources", "remove", "2", env=env)
    assert removed.returncode == 0 and "removed source #2" in removed.stdout
    assert [s["id"] for s in json.loads(run_cli("sources", "list", "--json", env=env).stdout)] == [
        1
    ]
