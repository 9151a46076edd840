"""`digestd preview EMAIL` run as an admin would: the real command in a subprocess."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta
from pathlib import Path

from digestd.core.tokens import read_token
from digestd.mail.subject import short_date
from tests.support.cli import run_cli


def test_preview_json_lists_picks_in_rank_order(env: dict[str, str]) -> None:
    res = run_cli("preview", "Kenji@Example.org", "--format", "json", env=env)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["subscriber"]["email"] == "kenji@example.org"
    start = datetime.fromisoformat(doc["window"]["start"])
    end = datetime.fromisoformat(doc["window"]["end"])
    assert end - start == timedelta(days=1)  # first daily digest: the last day
    titles = [e["title"] for e in doc["entries"]]
    assert len(titles) == 3
    assert set(titles[:2]) == {
        "DuoAttention: Efficient Long-Context LLM Inference with Retrieval and Streaming Heads",
        "RazorAttention: Efficient KV Cache Compression Through Retrieval Heads",
    }
    scores = [e["score"] for e in doc["entries"]]
    assert scores == sorted(scores, reverse=True)
    assert all(e["reason"].startswith("matches: ") and e["url"] for e in doc["entries"])
    # The contract: each entry's gist and reasons, the mail's subject.
    for e in doc["entries"]:
        assert e["reasons"] == e["reason"].split(" · ") and e["reasons"][0].startswith("matches")
        assert e["gist"] and "\n" not in e["gist"]
    duo = next(e for e in doc["entries"] if e["title"].startswith("DuoAttention"))
    assert duo["gist"].startswith("Based on this insight, we introduce DuoAttention")
    day = short_date(date.fromisoformat(doc["date"]))
    assert doc["subject"] == f"{titles[0].split(':')[0]}, and 2 more papers · {day}"


def test_preview_html_to_file_has_working_signed_links(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "kenji.html"
    res = run_cli("preview", "kenji@example.org", "--format", "html", "--out", str(out), env=env)
    assert res.returncode == 0, res.stderr
    html = out.read_text(encoding="utf-8")
    assert "RazorAttention: Efficient KV Cache Compression Through Retrieval Heads" in html
    token = re.search(r'href="https://digest\.example\.org/unsubscribe/([^"]+)"', html)
    assert token is not None
    assert read_token(env["DIGESTD_SECRET_KEY"], "unsubscribe", token.group(1)).subscriber_id == 1
    text = run_cli("preview", "kenji@example.org", env=env)
    assert text.returncode == 0
    assert text.stdout.startswith("Subject: DuoAttention, and 2 more papers · ")
    assert "Unsubscribe: https://digest.example.org/unsubscribe/" in text.stdout


def test_preview_unknown_or_nothing_matching(env: dict[str, str]) -> None:
    unknown = run_cli("preview", "nobody@example.org", env=env)
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines() == ["error: no subscriber 'nobody@example.org'"]
    nothing = run_cli("preview", "zed@example.org", env=env)
    assert nothing.returncode == 0
    assert nothing.stdout.strip() == (
        "Nothing to send to zed@example.org now: no new paper matches the topics or categories."
    )
