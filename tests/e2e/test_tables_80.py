"""Every table the admin CLI prints, read in an 80x24 terminal (COLUMNS=80) with realistic
data: long addresses, long source names, a server's long reply, a failing feed's long error
(issue 27). At 80 columns no line is wider, no id or status is cut, and no word is broken:
each word printed is a word of the same command's `--wide` output (one line a row, nothing
wrapped) or of its `--json`. The commands run in process on a real SQLite file, sending to a
real SMTP server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_cli
from tests.support.inbound import BOUNCE_ADDRESS, arf, dsn
from tests.support.smtp import SmtpTestServer, free_port

SEEDS = Path(__file__).resolve().parents[2] / "seeds" / "trending-papers.json"
LONG = "maximiliane.papadopoulou@computational-linguistics.example.org"
FULL = "konstantinos.alexandropoulos@mailbox.example.net"
PLAIN = "ada@example.org"
LONG_SOURCE = "Hugging Face Daily Papers (trending, mirrored for the reading group)"
DOWN_SOURCE = "The interpretability reading list of the lab's shared drive, weekly"
# A mailbox provider's soft refusal, as long as real ones are.
FULL_REPLY = (
    "452 4.2.2 The email account that you tried to reach is over quota. Please direct the "
    "recipient to https://support.example.net/mail/?p=OverQuotaTemp"
)


def words(text: str) -> set[str]:
    """The whitespace-separated words of `text`."""
    return set(text.split())


def json_words(value: Any) -> set[str]:
    """Every word of every string and number in a JSON document."""
    if isinstance(value, dict):
        return set().union(*(json_words(v) for v in value.values()), set())
    if isinstance(value, list):
        return set().union(*(json_words(v) for v in value), set())
    return words(str(value))


def without_notes(lines: list[str]) -> list[str]:
    """The lines without the table's own note naming the columns it left out."""
    kept, in_note = [], False
    for line in lines:
        in_note = in_note or line.lstrip().startswith("(not shown at this width")
        if not in_note:
            kept.append(line)
        elif line.rstrip().endswith(")"):
            in_note = False
    return kept


class Admin:
    """`digestd …` as the admin types it, in an 80-column terminal, on one database."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env, self.cwd = env, cwd

    def __call__(self, *args: str, columns: int = 80) -> str:
        done = run_cli(*args, env={**self.env, "COLUMNS": str(columns)}, cwd=self.cwd)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json"))

    def fits(self, *args: str, whole: tuple[str, ...] = (), also: str = "") -> list[str]:
        """The command's lines at 80 columns, checked: none wider, every value of `whole` a
        word of its own, and every word one of its --wide or --json output, or of `also`
        (what only the narrow layout says): none broken."""
        text = self(*args)
        lines = text.splitlines()
        assert lines, args
        too_wide = [line for line in lines if len(line) > 80]
        assert not too_wide, (args, too_wide)
        printed = words("\n".join(without_notes(lines)))
        missing = [value for value in whole if value not in printed]
        assert not missing, (args, missing, text)
        known = json_words(self.json(*args)) | words(also)
        known |= words(self(*args, "--wide", columns=200))
        broken = sorted(printed - known)
        assert not broken, (args, broken, text)
        return lines


@pytest.fixture
def admin(sqlite_url: str, tmp_path: Path, smtp_server: SmtpTestServer) -> Admin:
    env = {
        "DIGESTD_DATABASE_URL": sqlite_url,
        "DIGESTD_SMTP_PORT": str(smtp_server.port),
        "DIGESTD_SECRET_KEY": "tables-at-80-secret-key-0123456789",
        "DIGESTD_BOUNCE_ADDRESS": BOUNCE_ADDRESS,
        "DIGESTD_FROM": "digest@example.org",
    }
    return Admin(env, tmp_path)


def test_every_table_fits_80_columns_with_realistic_data(
    admin: Admin, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    people = tmp_path / "people.csv"
    people.write_text(
        "email,name\n"
        f"{PLAIN},Ada\n"
        f"{LONG},Maximiliane Papadopoulou-Wittgenstein\n"
        f"{FULL},Konstantinos Alexandropoulos\n"
    )
    admin("subscribers", "import", str(people))
    admin("sources", "add", str(SEEDS), "--name", LONG_SOURCE)
    down = f"http://127.0.0.1:{free_port()}/feeds/interpretability.xml"
    admin("sources", "add", down, "--name", DOWN_SOURCE, "--allow-private")

    fetched = admin.json("sources", "fetch")
    assert [r["status"] for r in fetched] == ["ok", "error"]
    # `fetch` again: the table of a second fetch (the first feed unchanged, the other down);
    # each fetch is new (its timings differ), so its words are checked against the names.
    again = admin("sources", "fetch").splitlines()
    assert max(len(line) for line in again) <= 80
    assert {"1", "2", "error"} <= words("\n".join(again))
    for name in (LONG_SOURCE, DOWN_SOURCE):
        assert " ".join(name.split()) in " ".join(" ".join(again).split())

    # One mailbox is full: its digest waits for a retry with the provider's long reply.
    smtp_server.set_fault(lambda rcpt, _n: FULL_REPLY if rcpt == FULL else None)
    run_cli("send-now", "--all", env={**admin.env, "COLUMNS": "80"}, cwd=tmp_path)
    smtp_server.set_fault(None)
    sent = {d["email"]: d for d in admin.json("deliveries", "list")}
    assert (sent[FULL]["status"], sent[LONG]["status"]) == ("retry", "sent")

    # A bounce comes back for the long address; a complaint about Ada's digest.
    to_long = next(m.message for m in smtp_server.messages if m.recipients == [LONG])
    back = tmp_path / "bounce.eml"
    back.write_bytes(
        dsn(
            to=BOUNCE_ADDRESS,
            recipient=LONG,
            original_headers=f"Message-ID: {to_long['Message-ID']}\nTo: {LONG}\n",
        )
    )
    to_ada = next(m.message for m in smtp_server.messages if m.recipients == [PLAIN])
    complaint = tmp_path / "complaint.eml"
    complaint.write_bytes(
        arf(
            to=BOUNCE_ADDRESS,
            recipient=PLAIN,
            original_headers=f"Message-ID: {to_ada['Message-ID']}\nTo: {PLAIN}\n",
        )
    )
    admin("inbound", str(back), str(complaint))
    admin("subscribers", "update", FULL, "--like", "1,2")

    # Each table at 80 columns.
    listed = admin.json("sources", "list")
    admin.fits(
        "sources", "list", whole=("1", "2", "ok", "error", "jsonfeed"), also="last errors: #2"
    )
    assert listed[1]["last_error"]
    admin.fits("entries", "list", "--limit", "8")
    subs = admin.json("subscribers", "list")
    admin.fits(
        "subscribers",
        "list",
        whole=(*(str(s["id"]) for s in subs), LONG, FULL, PLAIN, "bounced", "unsubscribed"),
    )
    rows = admin.json("deliveries", "list")
    admin.fits(
        "deliveries",
        "list",
        whole=(*(str(d["id"]) for d in rows), "retry", "sent", LONG, FULL, PLAIN),
    )
    for delivery in rows:
        admin.fits("deliveries", "show", str(delivery["id"]), whole=(delivery["status"],))
    came = admin.json("inbound", "list")
    assert sorted(m["kind"] for m in came) == ["bounce", "complaint"]
    admin.fits("inbound", "list", whole=(*(str(m["id"]) for m in came), "bounce", "complaint"))
    for message in came:
        admin.fits("inbound", "show", str(message["id"]), whole=(message["kind"],))
    for email, status in ((LONG, "bounced"), (FULL, "active"), (PLAIN, "unsubscribed")):
        story = admin.json("subscribers", "show", email)
        ids = [str(d["id"]) for d in story["deliveries"]] + [str(m["id"]) for m in story["inbound"]]
        admin.fits("subscribers", "show", email, whole=(email, status, *ids))


def test_stats_and_config_fit_80_columns_without_cutting(admin: Admin) -> None:
    admin("sources", "add", str(SEEDS), "--name", LONG_SOURCE)
    admin("sources", "add", "http://127.0.0.1:1/x.xml", "--name", DOWN_SOURCE, "--allow-private")
    admin("sources", "fetch")
    lines = admin("stats").splitlines()
    assert max(len(line) for line in lines) <= 80
    at = lines.index(next(line for line in lines if line.strip().startswith("id  health")))
    table = " ".join(lines[at : at + 6])
    for value in ("#1", "#2", "ok", "failing"):
        assert value in table.split()
    # Both names whole, wrapped between words at most (never cut with an ellipsis).
    assert " ".join(LONG_SOURCE.split()) in " ".join(table.split())
    assert "…" not in table
    # A value too wide for its column goes under its variable, whole; only a single word
    # wider than the terminal (this test's database path) runs past the edge, uncut.
    config = admin("config", "show").splitlines()
    url = admin.env["DIGESTD_DATABASE_URL"]
    assert config[config.index("DIGESTD_DATABASE_URL") + 1] == "    " + url
    assert all(len(line) <= 80 or line.split() == [url] for line in config)


def test_a_long_history_is_short_in_show_and_whole_with_wide(admin: Admin) -> None:
    admin("subscribers", "add", FULL, "--confirmed")
    for hour in range(1, 13):
        admin("subscribers", "update", FULL, "--hour", str(hour))
    events = admin.json("subscribers", "show", FULL)["events"]
    assert len(events) == 13
    short = admin("subscribers", "show", FULL).splitlines()
    assert "history (newest first, 8 of the last 13; all with --wide or --json)" in short
    assert sum(" subscriber.updated " in f" {line} " for line in short) == 8
    wide = admin("subscribers", "show", FULL, "--wide", columns=200)
    assert wide.count("subscriber.updated") == 12 and "subscriber.added" in wide
