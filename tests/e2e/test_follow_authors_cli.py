"""`digestd subscribers update --authors/--mute-authors`, `show` and `preview` in process,
on a real SQLite file and PostgreSQL: the scripts' contract for following authors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Entry
from tests.support.subscribers import Invoke, json_of


def _show(invoke: Invoke, email: str) -> dict:
    return json_of(invoke("subscribers", "show", email, "--json"))


def test_authors_are_set_shown_and_cleared(invoke: Invoke) -> None:
    invoke("subscribers", "add", "ada@example.org", "--confirmed")
    done = invoke(
        "subscribers",
        "update",
        "ada@example.org",
        "--authors",
        "Yann LeCun; LeCun, Yann ;Percy  Liang",
        "--mute-authors",
        "Jürgen Schmidhuber",
    )
    assert done.exit_code == 0, done.output
    assert "follows [] → ['Yann LeCun', 'Percy Liang']" in done.stdout
    shown = _show(invoke, "ada@example.org")
    assert shown["follows"] == shown["subscriber"]["follows"] == ["Yann LeCun", "Percy Liang"]
    assert shown["muted_authors"] == ["Jürgen Schmidhuber"]
    assert shown["events"][0]["detail"]["changes"]["muted_authors"] == [
        [],
        ["Jürgen Schmidhuber"],
    ]
    text = invoke("subscribers", "show", "ada@example.org").stdout
    assert "Yann LeCun, Percy Liang" in text and "Jürgen Schmidhuber" in text

    # Only the option given changes; "" clears.
    assert invoke("subscribers", "update", "ada@example.org", "--authors", "").exit_code == 0
    shown = _show(invoke, "ada@example.org")
    assert (shown["follows"], shown["muted_authors"]) == ([], ["Jürgen Schmidhuber"])
    bad = invoke("subscribers", "update", "ada@example.org", "--mute-authors", "Ada; ---")
    assert bad.exit_code == 1 and "author name '---' has no letters" in bad.stderr
    assert _show(invoke, "ada@example.org")["muted_authors"] == ["Jürgen Schmidhuber"]


def test_preview_json_gives_the_follow_reason(invoke: Invoke, db_url: str) -> None:
    # The command reads the real clock: papers seen an hour ago are in a first digest.
    seen = datetime.now(UTC) - timedelta(hours=1)
    ctx = AppContext(Settings(database_url=db_url))
    try:
        with session_scope(ctx.engine) as s:
            for n, (title, authors, upvotes) in enumerate(
                [
                    ("Popular Paper", ["A. Author"], 50),
                    ("Quiet Paper", ["LeCun Y."], 0),
                    ("Muted Paper", ["Percy Liang"], 90),
                ]
            ):
                s.add(
                    Entry(
                        canonical_key=f"test:{n}",
                        url=f"https://papers.example.org/{n}",
                        title=title,
                        authors=authors,
                        upvotes=upvotes,
                        published_at=seen,
                        ingested_at=seen,
                    )
                )
    finally:
        ctx.dispose()
    invoke("subscribers", "add", "ada@example.org", "--confirmed")
    invoke(
        "subscribers",
        "update",
        "ada@example.org",
        "--authors",
        "Yann LeCun",
        "--mute-authors",
        "Liang, Percy",
    )
    doc = json.loads(invoke("preview", "ada@example.org", "--format", "json").stdout)
    assert [e["title"] for e in doc["entries"]] == ["Quiet Paper", "Popular Paper"]
    assert doc["entries"][0]["reasons"] == ["by Yann LeCun, whom you follow"]
    assert doc["entries"][1]["reasons"] == ["trending", "50 upvotes"]


def test_a_csv_import_keeps_the_authors_a_reader_follows(invoke: Invoke, tmp_path) -> None:
    invoke("subscribers", "add", "ada@example.org", "--confirmed")
    invoke("subscribers", "update", "ada@example.org", "--authors", "Yann LeCun")
    invoke("subscribers", "update", "ada@example.org", "--mute-authors", "Jane Doe")
    people = tmp_path / "people.csv"
    people.write_text("email,topics\nada@example.org,world models\n", encoding="utf-8")
    done = invoke("subscribers", "import", str(people), "--update-existing")
    assert done.exit_code == 0, done.output
    shown = _show(invoke, "ada@example.org")
    assert shown["topics"] == "world models"
    assert (shown["follows"], shown["muted_authors"]) == (["Yann LeCun"], ["Jane Doe"])
