"""`digestd subscribers import/export`: all-or-nothing, bad rows by line, exact round trip."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from digestd.core.paths import data_dir
from digestd.subscribers.csv_io import COLUMNS
from tests.conftest import FIXTURES
from tests.support.subscribers import Invoke, json_of, make_invoke

HEADER = ",".join(COLUMNS)
SEEDS = data_dir("seeds") / "subscribers.csv"


# Batches of 2 rows: the bad rows below come after batches were already written, so "nothing
# imported" really proves the rollback (the `invoke` fixture: tests/e2e/conftest.py).
pytestmark = pytest.mark.cli_env(DIGESTD_BATCH_SIZE="2")


def _write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _counts(db_url: str) -> tuple[int, int]:
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        subs = conn.execute(sa.text("SELECT count(*) FROM subscriber")).scalar_one()
        events = conn.execute(sa.text("SELECT count(*) FROM event")).scalar_one()
    engine.dispose()
    return subs, events


def test_import_seeds_then_export_round_trips_exactly(
    another_sqlite: Callable[[Path], str],
    invoke: Invoke,
    tmp_path: Path,
    sqlite_url: str,
    db_url: str,
) -> None:
    result = invoke("subscribers", "import", str(SEEDS))
    assert result.exit_code == 0, result.output
    assert "added 6" in result.stdout and "rows/s" in result.stdout
    # every preference the CSV cannot hold by default, plus quoting and non-ASCII
    invoke(
        "subscribers", "add", "zoë@example.org", "--name", 'Zoë "Z" O\'Neil, PhD',
        "--topics", '"diffusion models", video', "--categories", "cs.CV,eess.IV",
        "--frequency", "weekly", "--weekday", "sun", "--hour", "23",
        "--timezone", "Pacific/Chatham", "--max-items", "100", "--format", "text", "--confirmed",
    )  # fmt: skip
    invoke("subscribers", "add", "pending@example.org")
    invoke("subscribers", "add", "gone@example.org", "--confirmed")
    invoke("subscribers", "remove", "gone@example.org")
    invoke("subscribers", "add", "paused@example.org", "--confirmed")
    invoke("subscribers", "suspend", "paused@example.org")

    first = invoke("subscribers", "export")
    assert first.exit_code == 0
    exported = first.stdout
    assert exported.splitlines()[0] == HEADER
    assert len(exported.splitlines()) == 1 + 10
    assert 'zoë@example.org,"Zoë ""Z"" O\'Neil, PhD","""diffusion models"", video",' in exported
    assert '"cs.CV,eess.IV",weekly:sun,23,Pacific/Chatham,100,text,active' in exported
    assert "maria@example.org,María Multitask" in exported
    assert "gone@example.org,,,,daily,8,UTC,10,html,unsubscribed" in exported

    # into a fresh database, then out again: identical
    path = tmp_path / "export.csv"
    assert invoke("subscribers", "export", str(path)).exit_code == 0
    assert path.read_text(encoding="utf-8") == exported
    other = tmp_path / "other"
    other.mkdir()
    # (a fresh SQLite file: on the PostgreSQL run this also crosses backends)
    fresh_invoke = make_invoke(another_sqlite(other / "fresh.db"))
    result = fresh_invoke("subscribers", "import", str(path))
    assert result.exit_code == 0, result.output
    assert fresh_invoke("subscribers", "export").stdout == exported
    # and importing the export over itself changes nothing
    result = invoke("subscribers", "import", str(path), "--update-existing")
    assert result.exit_code == 0, result.output
    assert "updated 0, unchanged 10" in result.stdout
    assert invoke("subscribers", "export").stdout == exported

    # --status filter
    # (bounced or unsubscribed: with why, when and which way mail stopped, for another
    # tool's suppression list)
    only = invoke("subscribers", "export", "--status", "unsubscribed").stdout.splitlines()
    assert only[0] == HEADER + ",reason,date,way"
    assert only[1].startswith("gone@example.org,,,,daily,8,UTC,10,html,unsubscribed,")
    *_, date, way = only[1].split(",")
    assert way == "admin" and date.endswith("+00:00")


def test_bad_rows_import_nothing_and_are_all_listed(
    invoke: Invoke, tmp_path: Path, db_url: str
) -> None:
    invoke("subscribers", "add", "old@example.org", "--confirmed")
    before = _counts(db_url)
    path = _write(
        tmp_path / "people.csv",
        HEADER,
        "one@example.org,One,,,daily,8,UTC,10,html,active",  # line 2
        "two@example.org,Two,,cs.CL,daily,8,UTC,10,html,active",  # 3
        "three@example.org,Three,,,weekly:wed,8,UTC,10,html,pending",  # 4
        "four@example.org,Four,,,daily,8,UTC,10,html,active",  # 5
        "not-an-address,,,,daily,8,UTC,10,html,active",  # 6
        "five@example.org,,,,daily,24,UTC,10,html,active",  # 7
        "six@example.org,,,,daily,8,Mars/Base,10,html,active",  # 8
        "TWO@example.org,,,,daily,8,UTC,10,html,active",  # 9 duplicate of line 3
        "old@example.org,,,,daily,8,UTC,10,html,active",  # 10 exists already
        "seven@example.org,,,,daily,8,UTC,10",  # 11 short row
        'eight@example.org,"two',  # 12-13: a quoted name spanning two lines
        'lines",,,daily,8,UTC,10,html,active',
        "nine@example.org,,,,daily,8,UTC,10,html,deleted",  # 14
        "ten@example.org,,,,daily:tue,8,UTC,10,html,active",  # 15
        "eleven@example.org,,,,daily,8,UTC,10,html,active",  # 16 fine
    )
    result = invoke("subscribers", "import", str(path))
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    expected = [
        "line 6: 'not-an-address' is not a valid email address",
        "line 7: hour must be between 0 and 23, got 24",
        "line 8: unknown time zone 'Mars/Base'",
        "line 9: two@example.org repeats line 3",
        "line 10: old@example.org already exists (use --update-existing to update it)",
        "line 11: 8 fields, expected 10",
        "line 12: name must be on one line",
        "line 14: status must be one of pending, active, unsubscribed, bounced, suspended",
        "line 15: frequency 'daily:tue': only weekly takes a day",
    ]
    assert len(errors) == len(expected) + 1
    for line, want in zip(errors, expected, strict=False):
        assert line.startswith(f"{path}: {want}"), (line, want)
    assert errors[-1] == f"error: {path}: 9 bad rows: nothing imported"
    assert _counts(db_url) == before  # no subscriber, no event written

    # --update-existing turns the known address into an update, the rest still fail
    result = invoke("subscribers", "import", str(path), "--update-existing")
    assert result.exit_code == 1 and "8 bad rows" in result.stderr
    assert _counts(db_url) == before


def test_header_and_file_problems(invoke: Invoke, tmp_path: Path, db_url: str) -> None:
    def one_error_line(path: Path, *extra: str) -> str:
        result = invoke("subscribers", "import", str(path), *extra)
        assert result.exit_code == 1
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, result.stderr
        return lines[0]

    unknown = _write(tmp_path / "unknown.csv", "email,name,Phone,hour", "a@example.org,A,555,8")
    assert one_error_line(unknown) == (
        f"error: {unknown}: line 1: unknown column 'Phone' (known: {', '.join(COLUMNS)}, "
        "first_name, last_name; --ignore-unknown-columns skips unknown columns); "
        "nothing imported"
    )
    no_email = _write(tmp_path / "no-email.csv", "name,hour", "A,8")
    assert "line 1: no email column" in one_error_line(no_email)
    twice = _write(tmp_path / "twice.csv", "Email,E-mail", "a@example.org,b@example.org")
    assert "columns 'Email' and 'E-mail' both mean email" in one_error_line(twice)
    empty = _write(tmp_path / "empty.csv", "")
    assert "line 1: the file is empty" in one_error_line(empty)

    binary = tmp_path / "latin1.csv"
    head = (HEADER + "\n" + "bo@example.org,Bo,,,daily,8,UTC,10,html,active\n").encode()
    binary.write_bytes(
        head + "ana@example.org,Ana Mü,,,daily,8,UTC,10,html,active\n".encode("latin-1")
    )
    offset = len(head) + len("ana@example.org,Ana M")
    assert one_error_line(binary) == (
        f"error: {binary}: not UTF-8 text: byte 0xFC at offset {offset} (line 3) cannot be "
        'decoded; save the file as UTF-8 (in Excel: "CSV UTF-8") and import it again; '
        "nothing imported"
    )
    missing = invoke("subscribers", "import", str(tmp_path / "nope.csv"))
    assert missing.exit_code == 1 and "nope.csv: no such file" in missing.stderr
    assert _counts(db_url) == (0, 0)


def test_dry_run_writes_nothing(invoke: Invoke, db_url: str) -> None:
    result = invoke("subscribers", "import", str(SEEDS), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "dry run, nothing written: would add 6" in result.stdout
    assert _counts(db_url) == (0, 0)


def test_update_existing_updates_audits_and_never_resubscribes(
    invoke: Invoke, tmp_path: Path, db_url: str
) -> None:
    assert invoke("subscribers", "import", str(SEEDS)).exit_code == 0
    invoke("subscribers", "remove", "tom@example.org")
    changed = _write(
        tmp_path / "changed.csv",
        HEADER,
        "ada@example.org,Ada Interp,,cs.LG,daily,9,Europe/Berlin,5,html,suspended",
        "new@example.org,,,,daily,8,UTC,10,html,",  # empty status: active
    )
    result = invoke("subscribers", "import", str(changed), "--update-existing")
    assert result.exit_code == 0, result.output
    assert "added 1, updated 1, unchanged 0" in result.stdout
    ada = json_of(invoke("subscribers", "show", "ada@example.org", "--json"))
    assert (ada["subscriber"]["send_hour"], ada["subscriber"]["status"]) == (9, "suspended")
    assert ada["subscriber"]["topics"] == ""
    actions = [(e["action"], e["actor"]) for e in ada["events"]]
    assert ("subscriber.updated", "cli:subscribers import") in actions
    assert ("subscriber.status", "cli:subscribers import") in actions
    assert (
        json_of(invoke("subscribers", "show", "new@example.org", "--json"))["subscriber"]["status"]
        == "active"
    )

    back = _write(
        tmp_path / "back.csv", HEADER, "tom@example.org,Tom,,,weekly,10,UTC,5,html,active"
    )
    result = invoke("subscribers", "import", str(back), "--update-existing")
    assert result.exit_code == 1
    assert "line 2: tom@example.org is unsubscribed: cannot set active on it" in result.stderr
    tom = json_of(invoke("subscribers", "show", "tom@example.org", "--json"))["subscriber"]
    assert tom["status"] == "unsubscribed"

    # A bounced address is not resumed by a file either: only `subscribers lift` does that.
    bounced = _write(tmp_path / "b.csv", HEADER, "bo@example.org,Bo,,,daily,8,UTC,5,html,bounced")
    assert invoke("subscribers", "import", str(bounced)).exit_code == 0
    for status in ("pending", "suspended", "active"):
        again = _write(
            tmp_path / "again.csv", HEADER, f"bo@example.org,Bo,,,daily,8,UTC,5,html,{status}"
        )
        result = invoke("subscribers", "import", str(again), "--update-existing")
        assert result.exit_code == 1
        assert (
            "line 2: bo@example.org is bounced: only an admin can lift it "
            "(digestd subscribers lift)" in result.stderr
        )
    lifted = invoke("subscribers", "lift", "bo@example.org")
    assert lifted.exit_code == 0 and "bo@example.org is now active" in lifted.stdout
    result = invoke("subscribers", "import", str(again), "--update-existing")
    assert result.exit_code == 0, result.output


IMPORTS = FIXTURES / "import"


def test_mailchimp_listmonk_and_bare_exports_import(invoke: Invoke, tmp_path: Path) -> None:
    def imported(path: Path) -> str:
        result = invoke("subscribers", "import", str(path))
        assert result.exit_code == 0, result.output
        return result.stdout

    out = imported(IMPORTS / "mailchimp_subscribed.csv")
    assert "added 4" in out
    assert "columns not imported: Address, Phone Number, Birthday, MEMBER_RATING" in out
    out = imported(IMPORTS / "mailchimp_unsubscribed.csv")
    assert "added 1" in out
    out = imported(IMPORTS / "listmonk.csv")
    assert "added 4" in out and "columns not imported: uuid, attributes, updated_at" in out
    assert "added 3" in imported(IMPORTS / "bare_email.csv")

    people = {s["email"]: s for s in json_of(invoke("subscribers", "list", "--json"))}
    assert len(people) == 12
    got = {e: (s["name"], s["status"], s["timezone"]) for e, s in people.items()}
    assert got["ada.lovelace@example.org"] == ("Ada Lovelace", "active", "Europe/London")
    assert got["grace.hopper@example.com"] == ("Grace Hopper", "active", "America/New_York")
    assert got["katherine.johnson@example.net"] == ("Katherine", "active", "UTC")
    assert got["alan@example.org"] == ("Turing", "active", "UTC")
    assert got["left@example.org"] == ("Lea Ving", "unsubscribed", "UTC")
    assert got["john@example.org"] == ("John Doe", "active", "UTC")
    assert got["paused@example.com"][1] == "suspended"  # listmonk "disabled"
    assert got["spam-me-not@example.com"][1] == "unsubscribed"  # listmonk "blocklisted"
    assert got["dos@example.org"] == ("", "active", "UTC")
    # columns that are missing take the defaults of `subscribers add`
    dos = people["dos@example.org"]
    assert (dos["frequency"], dos["send_hour"], dos["max_items"], dos["format"]) == (
        "daily",
        8,
        10,
        "html",
    )


@pytest.mark.backend  # the import's bulk inserts on PostgreSQL
def test_bom_headers_in_any_case_and_ignored_unknown_columns(
    invoke: Invoke, tmp_path: Path
) -> None:
    excel = tmp_path / "excel.csv"
    excel.write_bytes(
        "\ufeffE-mail,First Name,LAST NAME,Time Zone,Max Items,Shoe size\r\n"
        "Zoe@Example.org,Zoë,Ngata,pacific/auckland,5,38\r\n".encode()
    )
    refused = invoke("subscribers", "import", str(excel))
    assert refused.exit_code == 1 and "unknown column 'Shoe size'" in refused.stderr
    result = invoke("subscribers", "import", str(excel), "--ignore-unknown-columns")
    assert result.exit_code == 0, result.output
    assert "added 1" in result.stdout and "columns not imported: Shoe size" in result.stdout
    [zoe] = json_of(invoke("subscribers", "list", "--json"))
    assert (zoe["email"], zoe["name"], zoe["timezone"], zoe["max_items"]) == (
        "zoe@example.org",
        "Zoë Ngata",
        "Pacific/Auckland",
        5,
    )


def test_a_row_with_three_problems_lists_all_three(
    invoke: Invoke, tmp_path: Path, db_url: str
) -> None:
    path = _write(
        tmp_path / "three.csv",
        "Email Address,hour,timezone",
        "fine@example.org,7,Europe/Paris",
        "not-an-address,25,Mars/Base",
    )
    result = invoke("subscribers", "import", str(path))
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    [row] = [e for e in errors if "line 3" in e]
    assert row.startswith(f"{path}: line 3: 'not-an-address' is not a valid email address")
    assert row.endswith(
        "; hour must be between 0 and 23, got 25; unknown time zone 'Mars/Base' "
        "(use an IANA name like Europe/Berlin)"
    )
    assert errors[-1] == f"error: {path}: 1 bad row: nothing imported"
    assert _counts(db_url) == (0, 0)
