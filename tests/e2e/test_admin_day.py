"""A scripted admin day through the CLI, end to end (issue 27): import subscribers, add and
fetch a source, send, a bounce comes back by mail, a reader's digest is resent, a source is
disabled. Every table is read at 80 columns (no id or status cut, no word broken) and every
`--json` is checked; the CLI runs in-process against a real SQLite file and a real SMTP
server."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from click.testing import Result

from digestd.cli.tables import Column, layout
from tests.support.inbound import BOUNCE_ADDRESS, dsn
from tests.support.smtp import SmtpTestServer, free_port
from tests.support.subscribers import Invoke, json_of, make_invoke

SEEDS = Path(__file__).resolve().parents[2] / "seeds" / "trending-papers.json"
LONG = "maximiliane.papadopoulou@computational-linguistics.example.org"
ADA = "ada@example.org"
GRACE = "grace.hopper@navy-research.example.net"
SOURCE_NAME = "Hugging Face Daily Papers (trending, mirrored for the reading group)"


def table_lines(result: Result) -> list[str]:
    """The output of a table command that worked, each line at most 80 columns."""
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    too_wide = [line for line in lines if len(line) > 80]
    assert not too_wide, "\n".join(too_wide)
    return lines


def said(result: Result, *phrases: str) -> list[str]:
    """A command's message (not a table): it worked, no line wider than 80 columns (broken
    between words, never in one), and each phrase is in it."""
    lines = table_lines(result)
    joined = " ".join(" ".join(lines).split())
    for phrase in phrases:
        assert " ".join(phrase.split()) in joined, (phrase, lines)
    return lines


def words_whole(lines: list[str], *values: str) -> None:
    """Each value (an id, a status, an address) appears whole as one word of some line."""
    words = {w for line in lines for w in line.split()}
    for value in values:
        assert value in words, (value, lines)


def test_an_admin_day_at_80_columns(
    sqlite_url: str, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    invoke: Invoke = make_invoke(
        sqlite_url,
        DIGESTD_SMTP_PORT=str(smtp_server.port),
        DIGESTD_SECRET_KEY="admin-day-secret-key-0123456789",
        DIGESTD_BOUNCE_ADDRESS=BOUNCE_ADDRESS,
        DIGESTD_FROM="digest@example.org",
        COLUMNS="80",
    )

    # Morning: the list comes over from another tool.
    people = tmp_path / "people.csv"
    people.write_text(f"email,name\n{ADA},Ada\n{LONG},Maximiliane\n{GRACE},Grace\n")
    imported = invoke("subscribers", "import", str(people))
    assert imported.exit_code == 0, imported.output

    # A source with a long name, fetched; its table fits and says what it detected.
    said(invoke("sources", "add", str(SEEDS), "--name", SOURCE_NAME), "added source #1")
    fetched = table_lines(invoke("sources", "fetch"))
    words_whole(fetched, "1", "ok")
    listed = table_lines(invoke("sources", "list"))
    words_whole(listed, "1", "ok", "jsonfeed")
    assert " ".join(SOURCE_NAME.split()) in " ".join(" ".join(listed).split())
    [source] = json_of(invoke("sources", "list", "--json"))
    assert (source["format"], source["enabled"], source["last_error"]) == ("jsonfeed", True, None)
    assert source["last_success_at"] and source["entries_7d"] > 0

    entries = table_lines(invoke("entries", "list", "--limit", "8"))
    ids = [str(e["id"]) for e in json_of(invoke("entries", "list", "--limit", "8", "--json"))]
    words_whole(entries, *ids)

    # Send: everyone gets today's digest.
    sent = invoke("send-now", "--all")
    assert sent.exit_code == 0, sent.output
    assert sorted(m.recipients[0] for m in smtp_server.messages) == sorted([ADA, LONG, GRACE])
    rows = json_of(invoke("deliveries", "list", "--json"))
    by_email = {r["email"]: r for r in rows}
    assert {r["status"] for r in rows} == {"sent"}
    deliveries = table_lines(invoke("deliveries", "list"))
    words_whole(deliveries, *(str(r["id"]) for r in rows), "sent", LONG, ADA, GRACE)

    # A bounce comes back by mail for the long address (our Message-ID is the evidence).
    mail_to_long = next(m.message for m in smtp_server.messages if m.recipients == [LONG])
    returned = f"Message-ID: {mail_to_long['Message-ID']}\nTo: {LONG}\nSubject: digest\n"
    bounce = tmp_path / "bounce.eml"
    bounce.write_bytes(dsn(to=BOUNCE_ADDRESS, recipient=LONG, original_headers=returned))
    assert invoke("inbound", str(bounce)).exit_code == 0
    [record] = json_of(invoke("inbound", "list", "--json"))
    assert (record["kind"], record["subscriber"], record["evidence"]) == (
        "bounce",
        LONG,
        "message-id",
    )
    inbound = table_lines(invoke("inbound", "list"))
    words_whole(inbound, str(record["id"]), "bounce", LONG)
    shown = table_lines(invoke("inbound", "show", str(record["id"])))
    words_whole(shown, "bounce", "5.1.1", LONG)
    assert any(line.startswith("Subject: Undelivered Mail") for line in shown)
    whole = json_of(invoke("inbound", "show", str(record["id"]), "--json"))
    assert whole["delivery"] == by_email[LONG]["id"] and whole["recipients"][0]["address"] == LONG
    assert ["Subject", "Undelivered Mail Returned to Sender"] in whole["headers"]
    missing = invoke("inbound", "show", "999")
    assert missing.exit_code == 1 and "no inbound message 999" in missing.stderr

    # Their whole story in one place: profile, consent, history, deliveries, mail.
    story = json_of(invoke("subscribers", "show", LONG, "--json"))
    assert (story["email"], story["status"], story["stopped_by"]) == (LONG, "bounced", "bounce")
    assert story["may_mail"] is False and story["consent"]
    [delivery] = story["deliveries"]
    assert set(delivery) >= {"id", "period", "status", "sent_at", "papers", "reply"}
    assert (delivery["id"], delivery["status"]) == (by_email[LONG]["id"], "sent")
    assert delivery["papers"] and {"id", "title"} <= set(delivery["papers"][0])
    [came] = story["inbound"]
    assert set(came) >= {"id", "kind", "received_at", "action"}
    assert (came["id"], came["kind"]) == (record["id"], "bounce") and came["action"]
    page = table_lines(invoke("subscribers", "show", LONG))
    words_whole(page, LONG, "bounced", str(delivery["id"]), str(record["id"]), "sent", "bounce")
    listed = table_lines(invoke("subscribers", "list"))
    words_whole(listed, LONG, ADA, GRACE, "bounced", "active")

    # The bounced export loads into another tool's suppression list: why, when, which way.
    exported = invoke("subscribers", "export", "--status", "bounced")
    assert exported.exit_code == 0, exported.output
    header, row = list(csv.reader(io.StringIO(exported.stdout)))
    assert header[-3:] == ["reason", "date", "way"] and row[0] == LONG
    reason, date, way = row[-3:]
    assert reason and way == "bounce" and date.startswith(story["stopped_at"][:16])
    # …and is read back by import (the three columns are skipped, nothing is refused).
    again_in = tmp_path / "bounced.csv"
    again_in.write_text(exported.stdout)
    dry = invoke("subscribers", "import", str(again_in), "--dry-run", "--update-existing")
    assert dry.exit_code == 0, dry.output

    # One subscriber's deliveries, filtered.
    theirs = json_of(invoke("deliveries", "list", "--subscriber", LONG, "--json"))
    assert [d["id"] for d in theirs] == [by_email[LONG]["id"]]
    since = json_of(invoke("deliveries", "list", "--since", "2000-01-01", "--json"))
    assert len(since) == 3
    assert json_of(invoke("deliveries", "list", "--since", "2999-01-01", "--json")) == []

    # Ada's digest never arrived: resend it. Same papers, a new Message-ID, recorded.
    first = by_email[ADA]
    before = len(smtp_server.messages)
    again = invoke("deliveries", "resend", str(first["id"]), "--json")
    assert again.exit_code == 0, again.output
    [resend] = json.loads(again.stdout)["resends"]
    assert (resend["resend_of"], resend["status"], resend["email"]) == (first["id"], "sent", ADA)
    [mail] = [m.message for m in smtp_server.messages[before:]]
    original = next(m.message for m in smtp_server.messages[:before] if m.recipients == [ADA])
    assert mail["Message-ID"] == resend["message_id"] != original["Message-ID"]
    assert mail["Subject"] == original["Subject"]
    papers = _papers(invoke, first["id"])
    assert _papers(invoke, resend["id"]) == papers and papers
    # send-now --again does the same from the address.
    said(invoke("send-now", ADA, "--again"), ADA, "new Message-ID", "sent 1")
    assert len(smtp_server.messages) == before + 2

    # The relay is down: exit 75 (temporary), and the resend waits, recorded as not sent.
    down: Invoke = make_invoke(
        sqlite_url,
        DIGESTD_SMTP_PORT=str(free_port()),
        DIGESTD_SECRET_KEY="admin-day-secret-key-0123456789",
        DIGESTD_FROM="digest@example.org",
        COLUMNS="80",
    )
    waiting = down("deliveries", "resend", str(first["id"]))
    assert waiting.exit_code == 75, waiting.output
    newest = json_of(invoke("deliveries", "list", "--limit", "1", "--json"))[0]
    assert (newest["resend_of"], newest["status"], newest["sent_at"]) == (
        first["id"],
        "retry",
        None,
    )

    # Refused for anyone who may not be mailed, with the reason; nothing sent.
    assert invoke("subscribers", "suspend", GRACE).exit_code == 0
    refused = invoke("deliveries", "resend", str(by_email[GRACE]["id"]))
    assert refused.exit_code == 1 and "suspended" in refused.stderr
    assert len(smtp_server.messages) == before + 2

    # Evening: the source is paused, renamed, fetched less often.
    said(invoke("sources", "disable", "1"), SOURCE_NAME, "disabled")
    said(invoke("sources", "rename", "1", "HF daily"), "HF daily")
    assert invoke("sources", "set", "1", "--interval", "720").exit_code == 0
    [source] = json_of(invoke("sources", "list", "--json"))
    assert (source["enabled"], source["name"], source["interval_minutes"]) == (
        False,
        "HF daily",
        720,
    )
    words_whole(table_lines(invoke("sources", "list")), "1", "disabled")
    assert invoke("sources", "fetch").stdout.startswith("no sources to fetch")
    wide = invoke("sources", "list", "--wide")
    assert wide.exit_code == 0 and "HF daily" in wide.stdout and str(SEEDS) in wide.stdout

    deliveries = table_lines(invoke("deliveries", "list"))
    words_whole(
        deliveries, *(str(r["id"]) for r in json_of(invoke("deliveries", "list", "--json")))
    )


def _papers(invoke: Invoke, delivery_id: int) -> list[Any]:
    shown = json_of(invoke("deliveries", "show", str(delivery_id), "--json"))
    return [p["entry_id"] for p in shown["papers"]]


def test_a_table_with_long_values_keeps_ids_statuses_and_words_whole() -> None:
    ADDRESS = "someone.with.a.long.address@research-institute.example.org"
    columns = [
        Column("id", keep=True, right=True),
        Column("status", keep=True),
        Column("subscriber", keep=True),
        Column("period", priority=2),
        Column("tries", priority=1, right=True),
        Column("reply", wrap=True),
    ]
    reply = (
        "452 4.2.2 The email account that you tried to reach is over quota; please direct "
        "the recipient to the help center"
    )
    rows = [
        ["1234567", "retry", "a@example.org", "2026-W49", "3", reply],
        ["12", "bounced", ADDRESS, "2026-12-06", "1", ""],
    ]
    lines, left_out = layout(columns, rows, total=80)
    assert max(len(line) for line in lines) <= 80
    assert left_out == ["period", "tries", "reply"]  # the long address leaves no room
    words_whole(lines, "1234567", "retry", "bounced", ADDRESS)
    short = layout(columns, rows[:1], total=80)[0]
    assert max(len(line) for line in short) <= 80
    # The reply wraps in its own column, at word boundaries, every word whole.
    assert set(reply.split()) <= {w for line in short for w in line.split()}
    assert short[1].split()[:2] == ["1234567", "retry"]
    wide, nothing = layout(columns, rows, total=80, wide=True)
    assert nothing == [] and len(wide) == 3 and reply in wide[1]
