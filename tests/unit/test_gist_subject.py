"""A paper's gist (the sentence stating its contribution) and a digest's subject line."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from digestd.ingest.detect import parse_document
from digestd.ingest.normalize import normalize
from digestd.mail.gist import gist, sentences
from digestd.mail.subject import MAX_SUBJECT, short_title, subject_line
from tests.support.digests import seed_entries

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ingest"
SUNDAY = date(2026, 12, 6)
SUNDAY_NOW = datetime(2026, 12, 6, tzinfo=UTC)


def seed_summary(title_start: str) -> str:
    entries = seed_entries(SUNDAY_NOW)
    return next(e.summary for e in entries if e.title.startswith(title_start))


@pytest.mark.parametrize(
    ("title", "expected_start"),
    [
        # Background first, the contribution later: the "we propose" sentence wins.
        ("DR-Tune", "To deal with these issues, we propose a novel fine-tuning framework"),
        ("Successor Heads", "In this work we present successor heads"),
        # "We introduce" after a finding ("we identify…"): what the paper makes wins.
        ("DuoAttention", "Based on this insight, we introduce DuoAttention, a framework"),
    ],
)
def test_gist_is_the_sentence_stating_the_contribution(title: str, expected_start: str) -> None:
    assert gist(seed_summary(title)).startswith(expected_start)


def test_gist_of_real_arxiv_and_hf_abstracts() -> None:
    body = (FIXTURES / "hf-daily-papers/api/daily_papers_2026-06-12_raw.json").read_bytes()
    papers = {
        p.canonical_key: p
        for p in (normalize(i, SUNDAY_NOW) for i in parse_document(body, {}).items)
    }
    assert gist(papers["arxiv:2606.11662"].summary) == (
        "We propose TreeSeeker, an inference-time framework for controlled trial-and-error in "
        "deep search."
    )
    # Every gist is one line, short, and a sentence of its abstract.
    for paper in papers.values():
        line = gist(paper.summary)
        assert line and "\n" not in line and len(line) <= 240
        assert line.rstrip("…") in " ".join(paper.summary.split())


def test_no_cue_gives_the_first_sentence_and_a_question_is_no_statement() -> None:
    assert gist("Cats are neat. Dogs too.") == "Cats are neat."
    text = "How can we build agents that learn? We show that they can. We propose X."
    assert gist(text) == "We propose X."
    assert gist("") == ""


def test_sentences_do_not_break_after_abbreviations() -> None:
    text = "Benchmarks use formats (e.g. OpenDRIVE) and tools, i.e. Simulators. We propose Y."
    assert sentences(text) == [
        "Benchmarks use formats (e.g. OpenDRIVE) and tools, i.e. Simulators.",
        "We propose Y.",
    ]


def test_a_long_gist_is_cut_at_a_word() -> None:
    long = "We propose " + "a very long method name " * 20 + "for everything."
    out = gist(long)
    assert len(out) <= 240 and out.endswith("…") and not out.endswith(" …")


@pytest.mark.parametrize(
    ("count", "title", "expected"),
    [
        (10, "Successor Heads: Recurring, Interpretable Attention Heads In The Wild",
         "Successor Heads, and 9 more papers · Sun 6 Dec"),
        (2, "DuoAttention: Efficient Long-Context LLM Inference",
         "DuoAttention, and 1 more paper · Sun 6 Dec"),
        (1, "Does Circuit Analysis Interpretability Scale? Evidence from Multiple Choice",
         "Does Circuit Analysis Interpretability Scale? · Sun 6 Dec"),
        (3, "On Bringing Robots Home", "On Bringing Robots Home, and 2 more papers · Sun 6 Dec"),
    ],
)  # fmt: skip
def test_subject_says_what_is_inside(count: int, title: str, expected: str) -> None:
    assert subject_line(SUNDAY, count, title) == expected


def test_subject_fits_78_characters_whatever_the_title() -> None:
    title = "A " + "Remarkably Long Title Without Any Colon " * 5
    subject = subject_line(SUNDAY, 125, title)
    assert len(subject) <= MAX_SUBJECT
    assert subject.endswith("…, and 124 more papers · Sun 6 Dec")
    name = "Supercalifragilisticexpialidocious" * 4 + ": the rest"
    assert len(subject_line(SUNDAY, 10, name)) <= MAX_SUBJECT
    assert "\n" not in subject_line(SUNDAY, 2, "Evil\r\nBcc: x@example.org")
    assert short_title("", 40) == "(untitled)"
