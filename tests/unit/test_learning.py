"""The learned model: bounded in size, fading with age, liked papers kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digestd.core.models import Entry
from digestd.ingest.detect import parse_document
from digestd.ingest.normalize import normalize
from digestd.ranking import learning
from digestd.ranking.select import Profile, Selector, Taste
from digestd.subscribers.votes import VoteRow
from tests.support.digests import seed_entries

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ingest"


def cache() -> tuple[Selector, learning.PaperCache]:
    entries = seed_entries(NOW - timedelta(hours=1))
    papers = learning.PaperCache()
    for e in entries:
        papers.add(e.id or 0, e.title, e.summary)
    return Selector(entries), papers


def test_votes_fade_with_age_and_liked_papers_do_not() -> None:
    fresh = VoteRow(1, 1, False, NOW)
    month = VoteRow(1, -1, False, NOW - timedelta(days=learning.HALF_LIFE_DAYS))
    liked = VoteRow(1, 1, True, NOW - timedelta(days=1000))
    assert learning.fade(fresh, NOW) == 1.0
    assert abs(learning.fade(month, NOW) + 0.5) < 1e-9
    assert learning.fade(liked, NOW) == 1.0


def test_model_size_is_capped_whatever_the_number_of_votes() -> None:
    selector, papers = cache()
    profile = Profile("", (), 10, NOW - timedelta(days=1), NOW)
    many = tuple(VoteRow(i, 1 if i % 3 else -1, False, NOW) for i in range(1, 62)) * 5
    model = selector.model(profile, Taste(many, papers, NOW))
    assert model is not None
    assert len(model.terms) <= learning.MAX_TERMS + learning.MAX_NEGATIVE_TERMS
    assert len(model.exemplars) <= learning.MAX_EXEMPLARS


def test_votes_older_than_the_fade_limit_leave_no_model() -> None:
    selector, papers = cache()
    profile = Profile("", (), 10, NOW - timedelta(days=1), NOW)
    ancient = (VoteRow(10, 1, False, NOW - timedelta(days=learning.HALF_LIFE_DAYS * 6)),)
    assert selector.model(profile, Taste(ancient, papers, NOW)) is None
    # ... and the subscriber then gets exactly what their profile gets.
    assert selector.select(profile, frozenset(), Taste(ancient, papers, NOW)) == selector.select(
        profile
    )


def test_short_title_cuts_at_a_word() -> None:
    title = "DuoAttention: Efficient Long-Context LLM Inference with Retrieval and Streaming Heads"
    assert learning.short_title(title) == "DuoAttention: Efficient Long-Context…"


def test_a_voter_with_three_likes_and_three_dislikes_still_gets_max_items() -> None:
    """Learning reorders; it never starves a digest (the issue: 4 papers instead of 15).
    The reader likes condensed-matter papers; the window has a few of them among the
    language-model papers of the seeds, which share no words with the likes."""
    seeds = seed_entries(NOW - timedelta(hours=1))
    body = (
        FIXTURES / "arxiv-api/legacy/arxiv.py-2016_search_query_au_del_maestro.xml"
    ).read_bytes()
    physics = [
        Entry(
            id=200 + n,
            canonical_key=a.canonical_key,
            title=a.title,
            summary=a.summary,
            published_at=NOW - timedelta(hours=1),
            ingested_at=NOW - timedelta(hours=1),
        )
        for n, a in enumerate(normalize(item, NOW) for item in parse_document(body, {}).items)
    ]
    papers = learning.PaperCache()
    for e in seeds + physics:
        papers.add(e.id or 0, e.title, e.summary)
    liked, disliked = physics[:3], seeds[:3]
    votes = tuple(VoteRow(e.id or 0, 1, False, NOW - timedelta(days=1)) for e in liked) + tuple(
        VoteRow(e.id or 0, -1, False, NOW - timedelta(days=1)) for e in disliked
    )
    # The voted papers came in an earlier digest; the window holds the others.
    window = seeds[3:] + physics[3:]
    profile = Profile("", (), 15, NOW - timedelta(days=1), NOW)
    picks = Selector(window).select(profile, frozenset(), Taste(votes, papers, NOW))
    assert len(picks) == 15
    # ... ranked by the likes: the window's physics papers first.
    assert {p.entry.id for p in picks[:7]} == {e.id for e in physics[3:]}


def test_a_liked_phrase_ranks_the_paper_saying_it_above_one_with_its_words_apart() -> None:
    """Two-word phrases are learned terms: a reader who liked papers on "attention heads"
    gets the paper about attention heads before one that mentions attention and heads
    apart (both have each word as often, and ties go to the lower id)."""
    at = NOW - timedelta(hours=1)

    def paper(entry_id: int, title: str, summary: str) -> Entry:
        return Entry(id=entry_id, title=title, summary=summary, published_at=at, ingested_at=at)

    liked = [
        paper(1, "Retrieval attention heads", "We find attention heads that retrieve facts."),
        paper(2, "Successor attention heads", "Attention heads that increment tokens."),
    ]
    window = [
        paper(10, "Attention to heads of state", "Heads of state draw attention in news."),
        paper(11, "Attention heads of the state", "Attention heads of state draw the news."),
        *[
            paper(20 + n, f"Unrelated paper {n}", "Protein folding with diffusion.")
            for n in range(8)
        ],
    ]
    papers = learning.PaperCache()
    for e in liked:
        papers.add(e.id or 0, e.title, e.summary)
    votes = tuple(VoteRow(e.id or 0, 1, False, NOW) for e in liked)
    picks = Selector(window).select(
        Profile("", (), 2, NOW - timedelta(days=1), NOW), frozenset(), Taste(votes, papers, NOW)
    )
    assert [p.entry.id for p in picks] == [11, 10]


def _paper(entry_id: int, title: str, summary: str) -> Entry:
    at = NOW - timedelta(hours=1)
    return Entry(id=entry_id, title=title, summary=summary, published_at=at, ingested_at=at)


def _distillation_window() -> list[Entry]:
    """Four papers saying "distillation" with "compression", one saying "compression"
    alone, one on another subject the same length, and filler that says neither."""
    return [
        *[
            _paper(10 + n, f"Distillation study {n}", "Distillation for model compression.")
            for n in range(4)
        ],
        _paper(20, "Smaller networks", "Model compression of networks."),
        _paper(21, "Weather networks", "Model weather of networks."),
        *[
            _paper(30 + n, f"Protein paper {n}", "Protein folding with diffusion.")
            for n in range(6)
        ],
    ]


def test_a_window_word_used_with_a_liked_term_is_its_neighbor_and_a_common_one_is_not() -> None:
    selector = Selector(_distillation_window())
    win = selector._window(NOW - timedelta(days=1), NOW)
    near = selector.neighbors(win, "distil")
    assert "compress" in near  # in every paper saying distillation, in 5 of 12 papers
    assert "model" in near
    assert "protein" not in near  # never with it
    assert "distil" not in near  # the term itself


def test_a_paper_using_a_word_the_window_associates_with_the_liked_subject_ranks_higher(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Co-occurrence expansion: the reader liked two papers on distillation; the window's
    paper on "compression" never says distillation, but the window's distillation papers
    talk about compression, so the model pulls it more than the paper on weather, which
    shares as many words with the likes (none) and with the window. Feedback is off to
    see the association alone."""
    monkeypatch.setattr(learning, "FEEDBACK_ROUNDS", 0)
    liked = [
        _paper(1, "Knowledge distillation", "Distillation of a teacher into a student."),
        _paper(2, "Distillation for students", "Teacher distillation at scale."),
    ]
    papers = learning.PaperCache()
    for e in liked:
        papers.add(e.id or 0, e.title, e.summary)
    votes = tuple(VoteRow(e.id or 0, 1, False, NOW) for e in liked)
    picks = Selector(_distillation_window()).select(
        Profile("", (), 12, NOW - timedelta(days=1), NOW), frozenset(), Taste(votes, papers, NOW)
    )
    learned = {p.entry.id: p.parts["learned"] for p in picks}
    assert learned[20] > learned[21]
