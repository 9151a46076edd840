"""Start from your library (issue 26): `subscribers update --import-library FILE` stores the
papers' texts as liked texts, whether or not digestd has the papers, and the next digest
ranks the library's subject first; bare ids are matched in the database only; a bad file is
one line and stores nothing. On SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Entry, Event, LibraryPaper, Subscriber
from digestd.delivery.digests import preview
from digestd.subscribers import library, manage
from digestd.subscribers.library import BadLibrary
from digestd.subscribers.library_file import MAX_BYTES
from digestd.subscribers.manage import ByEmail
from tests.integration.test_select_learning import send
from tests.support.digests import add_subscriber, load_seed_entries
from tests.support.smtp import SmtpTestServer
from tests.support.subscribers import make_invoke
from tests.support.web import text_part

NOW = datetime(2026, 11, 26, 8, 30, tzinfo=UTC)
LIBRARY = Path(__file__).parents[1] / "fixtures" / "library" / "interpretability.bib"
# The library's subject among the seed papers, told by their titles.
SUBJECT = re.compile(r"circuit|interpret|mechanis", re.IGNORECASE)


@pytest.fixture
def seeded(app: AppContext, clock) -> AppContext:
    """The 61 seed papers, new today, and one arXiv paper digestd fetched earlier."""
    clock.set(NOW)
    with session_scope(app.engine) as s:
        load_seed_entries(s, NOW - timedelta(hours=2))
        s.add(
            Entry(
                canonical_key="arxiv:2310.06825",
                url="https://arxiv.org/abs/2310.06825",
                title="Mistral 7B",
                summary="A 7-billion-parameter language model engineered for performance.",
                authors=["Albert Q. Jiang", "Alexandre Sablayrolles"],
                published_at=NOW - timedelta(days=30),
                ingested_at=NOW - timedelta(days=30),
            )
        )
    return app


def subscribe(app: AppContext, email: str, **prefs: object) -> int:
    prefs.setdefault("send_hour", 8)
    with session_scope(app.engine) as s:
        return add_subscriber(s, email, NOW - timedelta(days=10), **prefs).id  # type: ignore[return-value]


def picks(app: AppContext, sub_id: int) -> list[tuple[str, str]]:
    """(title, reason) of the subscriber's next digest, as `preview` shows it."""
    with session_scope(app.engine) as s:
        sub = s.get(Subscriber, sub_id)
        assert sub is not None
        return [(p.entry.title, p.reason) for p in preview(s, sub, NOW).selection.picks]


def stored(app: AppContext, sub_id: int) -> list[tuple[str, str | None, int | None]]:
    with session_scope(app.engine) as s:
        rows = s.execute(
            select(LibraryPaper.title, LibraryPaper.ref, LibraryPaper.entry_id)
            .where(LibraryPaper.subscriber_id == sub_id)  # type: ignore[arg-type]
            .order_by(LibraryPaper.id)  # type: ignore[arg-type]
        ).all()
        return [tuple(r) for r in rows]  # type: ignore[misc]


def test_a_library_of_20_bibtex_papers_ranks_its_subject_first(seeded: AppContext) -> None:
    trending = subscribe(seeded, "trending@example.org", topics="", max_items=5)
    reader = subscribe(seeded, "reader@example.org", topics="", max_items=5)
    before = picks(seeded, reader)
    done = library.import_library(seeded, ByEmail("reader@example.org"), LIBRARY.read_bytes())
    assert (done.format, done.papers, done.in_database, done.not_found) == ("BibTeX", 20, 0, ())
    assert done.summary == "20 papers from your library will shape your next digests"
    after = picks(seeded, reader)
    assert before == picks(seeded, trending)  # until the import, the trending list
    # The library's subject leads the next digest, each pick saying which library paper.
    assert all(SUBJECT.search(title) for title, _ in after[:3]), after
    assert sum(1 for title, _ in after if SUBJECT.search(title)) >= 4, after
    assert sum(1 for title, _ in picks(seeded, trending) if SUBJECT.search(title)) <= 3
    assert all("you liked" in reason for _, reason in after[:3]), after
    assert len(after) == 5  # learning reorders, it never cuts


async def test_a_send_pass_ranks_by_the_library_too(
    seeded: AppContext, smtp_server: SmtpTestServer
) -> None:
    seeded.settings = Settings(**{**seeded.settings.__dict__, "smtp_port": smtp_server.port})
    reader = subscribe(seeded, "reader@example.org", topics="", max_items=5)
    library.import_library(seeded, ByEmail("reader@example.org"), LIBRARY.read_bytes())
    got = await send(seeded)
    assert all(SUBJECT.search(title) for title in got[reader][:3]), got[reader]
    [mail] = smtp_server.messages
    assert re.search(r'Why: like "[^"]*" you liked', text_part(mail))


def test_bare_ids_are_matched_in_the_database_and_unknown_ones_reported(
    seeded: AppContext,
) -> None:
    reader = subscribe(seeded, "reader@example.org", topics="")
    ids = b"arXiv:2310.06825v1\n10.1145/3290605.3300233\nhttps://arxiv.org/abs/2501.00001\n"
    done = library.import_library(seeded, ByEmail("reader@example.org"), ids)
    assert (done.format, done.papers, done.in_database) == ("ids", 1, 1)
    assert done.not_found == ("doi:10.1145/3290605.3300233", "arxiv:2501.00001")
    assert done.summary.endswith(
        "1 paper from your library will shape your next digests; 2 ids not found"
    )
    [(title, ref, entry_id)] = stored(seeded, reader)
    assert (title, ref) == ("Mistral 7B", "arxiv:2310.06825") and entry_id is not None
    # Ids alone that digestd has never seen: nothing to learn from, nothing stored.
    with pytest.raises(BadLibrary, match="none of the 2 ids is a paper digestd has"):
        library.import_library(seeded, ByEmail("reader@example.org"), b"2501.00001\n2501.00002\n")
    assert len(stored(seeded, reader)) == 1


def test_the_cli_imports_offers_frequent_authors_and_refuses_bad_files(
    seeded: AppContext, db_url: str, tmp_path: Path
) -> None:
    reader = subscribe(seeded, "ada@example.org", topics="", follows=["Chris Olah"])
    invoke = make_invoke(db_url)
    result = invoke("subscribers", "update", "ada@example.org", "--import-library", str(LIBRARY))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "imported 20 papers from ada@example.org's library will shape your next digests "
        "(BibTeX, 0 already in the database)"
    )
    # Its most frequent authors not followed yet, and the command that follows them too.
    assert lines[1] == (
        "frequent authors in the library: Neel Nanda; Nelson Elhage; Jacob Steinhardt; "
        "Catherine Olsson"
    )
    command = lines[2].removeprefix("to follow them: ")
    assert command == (
        "digestd subscribers update ada@example.org --authors 'Chris Olah; Neel Nanda; "
        "Nelson Elhage; Jacob Steinhardt; Catherine Olsson'"
    )
    followed = invoke(
        "subscribers", "update", "ada@example.org", "--authors", command.split("'")[1]
    )
    assert followed.exit_code == 0, followed.output
    with session_scope(seeded.engine) as s:
        sub = s.get(Subscriber, reader)
        assert sub is not None and len(sub.follows) == 5

    huge = tmp_path / "huge.bib"
    huge.write_bytes(b"@misc{a, title={x}}\n" + b"%" * MAX_BYTES)
    broken = tmp_path / "broken.bib"
    broken.write_text("@article{ok, title={Fine}}\n\n@article{bad, title={Never closed}\n")
    for path, message in (
        (huge, "the file is larger than 5 MB"),
        (broken, "line 3: a BibTeX entry is malformed"),
        (tmp_path / "missing.bib", "cannot read"),
    ):
        refused = invoke(
            "subscribers",
            "update",
            "ada@example.org",
            "--import-library",
            str(path),
            "--topics",
            "x",
        )
        assert refused.exit_code == 1, refused.output
        assert refused.stdout == ""
        [line] = refused.stderr.splitlines()
        assert message in line, line
    # Nothing stored from a bad file: the library and the topics are as they were.
    assert len(stored(seeded, reader)) == 20
    with session_scope(seeded.engine) as s:
        sub = s.get(Subscriber, reader)
        assert sub is not None and sub.topics == ""
        imports = s.execute(
            select(func.count()).where(Event.action == library.IMPORTED)  # type: ignore[arg-type]
        ).scalar_one()
    assert imports == 1


def test_forgetting_a_reader_erases_their_library(seeded: AppContext) -> None:
    reader = subscribe(seeded, "reader@example.org", topics="")
    library.import_library(seeded, ByEmail("reader@example.org"), LIBRARY.read_bytes())
    manage.forget(seeded, ByEmail("reader@example.org"))
    assert stored(seeded, reader) == []
