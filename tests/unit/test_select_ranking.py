"""Ranking on the seed papers: the plainly relevant papers come first, exclusions hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digestd.core.models import Entry
from digestd.ingest.detect import parse_document
from digestd.ingest.normalize import normalize
from digestd.ranking.select import Profile, Selector
from tests.support.digests import seed_entries

NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ingest"


@pytest.fixture(scope="module")
def selector() -> Selector:
    return Selector(seed_entries(NOW - timedelta(hours=2)))


def titles(
    selector: Selector, topics: str, n: int = 10, categories: tuple[str, ...] = ()
) -> list[str]:
    profile = Profile(topics, categories, n, NOW - timedelta(days=1), NOW)
    return [p.entry.title for p in selector.select(profile)]


@pytest.mark.parametrize(
    ("topics", "expected_in_top3"),
    [
        (
            "mechanistic interpretability",
            [
                "Mechanistic Interpretation through Contextual Decomposition in Transformers",
                "Successor Heads: Recurring, Interpretable Attention Heads In The Wild",
                "Circuit Component Reuse Across Tasks in Transformer Language Models",
            ],
        ),
        (
            "KV cache",
            [
                "RazorAttention: Efficient KV Cache Compression Through Retrieval Heads",
                "DuoAttention: Efficient Long-Context LLM Inference with Retrieval and "
                "Streaming Heads",
            ],
        ),
        (
            '"multi-task learning"',
            [
                "Challenges and Opportunities of Using Transformer-Based Multi-Task Learning in "
                "NLP Through ML Lifecycle: A Survey",
                "TaskExpert: Dynamically Assembling Multi-Task Representations with Memorial "
                "Mixture-of-Experts",
            ],
        ),
        (
            "retrieval-augmented generation",
            [
                "Ragnarök: A Reusable RAG Framework and Baselines for TREC 2024 "
                "Retrieval-Augmented Generation Track",
                "RAG vs Fine-tuning: Pipelines, Tradeoffs, and a Case Study on Agriculture",
            ],
        ),
    ],
)
def test_relevant_papers_rank_first(
    selector: Selector, topics: str, expected_in_top3: list[str]
) -> None:
    top3 = titles(selector, topics)[:3]
    for title in expected_in_top3:
        assert title in top3, f"{title!r} not in top 3 for {topics!r}: {top3}"


def test_excluded_words_and_phrases_remove_papers(selector: Selector) -> None:
    safety = "On the Role of Attention Heads in Large Language Model Safety"
    assert safety in titles(selector, '"attention heads"', 61)
    assert safety not in titles(selector, '"attention heads" -safety', 61)
    razor = "RazorAttention: Efficient KV Cache Compression Through Retrieval Heads"
    assert razor in titles(selector, "retrieval heads", 61)
    assert razor not in titles(selector, 'retrieval heads -"kv cache"', 61)
    # an exclusion alone keeps the trending list minus the excluded papers
    trending_minus = titles(selector, "-safety", 61)
    assert safety not in trending_minus and len(trending_minus) > 40


def test_accents_and_case_do_not_matter(selector: Selector) -> None:
    etude = titles(selector, "etude cognitive")
    assert etude[0].startswith("Étude cognitive des processus")
    assert titles(selector, "ÉTUDE COGNITIVE") == etude
    assert titles(selector, "KV CACHE") == titles(selector, "kv cache")
    assert titles(selector, "ragnarok")[0].startswith("Ragnarök")


def test_no_topics_gives_trending_order(selector: Selector) -> None:
    feed_order = [e.title for e in sorted(seed_entries(NOW), key=lambda e: -e.upvotes)]
    assert titles(selector, "", 10) == feed_order[:10]
    profile = Profile("", (), 3, NOW - timedelta(days=1), NOW)
    assert [p.reason for p in selector.select(profile)] == [
        "trending · 132 upvotes",
        "trending · 130 upvotes",
        "trending · 128 upvotes",
    ]


def test_trending_ties_go_to_the_newer_paper() -> None:
    a, b = seed_entries(NOW)[:2]
    a.upvotes = b.upvotes = 7
    a.published_at = NOW - timedelta(hours=5)
    b.published_at = NOW - timedelta(hours=1)
    sel = Selector([a, b])
    assert [p.entry.id for p in sel.select(Profile("", (), 5, NOW - timedelta(days=1), NOW))] == [
        b.id,
        a.id,
    ]


def test_reason_names_matches_and_upvotes(selector: Selector) -> None:
    profile = Profile('"KV cache"', (), 3, NOW - timedelta(days=1), NOW)
    top = selector.select(profile)[0]
    assert top.entry.title.startswith("RazorAttention")
    assert top.reason == "matches: KV cache · 84 upvotes"
    assert 0 < top.score <= 1


def test_nothing_matching_gives_nothing(selector: Selector) -> None:
    assert titles(selector, "quantum chromodynamics lattice") == []


def test_categories_filter_by_arxiv_category_or_source_name() -> None:
    e1, e2, e3 = seed_entries(NOW)[:3]
    e1.categories, e2.categories, e3.categories = ["cs.CV"], ["cs.CL", "cs.LG"], ["stat.ML"]
    e3.source_id = 9
    sel = Selector([e1, e2, e3], {e3.id or 0: ["Hugging Face Daily"]})

    def ids(cats: tuple[str, ...]) -> list[int | None]:
        profile = Profile("", cats, 10, NOW - timedelta(days=1), NOW)
        return sorted(p.entry.id for p in sel.select(profile))

    assert ids(("cs.cl",)) == [e2.id]
    assert ids(("cs",)) == [e1.id, e2.id]
    assert ids(("hugging face daily",)) == [e3.id]
    assert ids(("cs.CV", "stat.ML")) == [e1.id, e3.id]
    assert ids(("math.AG",)) == []


def test_window_and_exclusions_limit_candidates(selector: Selector) -> None:
    entries = seed_entries(NOW)
    old, new = entries[0], entries[1]
    old.ingested_at = NOW - timedelta(days=3)
    sel = Selector([old, new])
    profile = Profile("", (), 10, NOW - timedelta(days=1), NOW)
    assert [p.entry.id for p in sel.select(profile)] == [new.id]
    assert sel.select(profile, frozenset({new.id or 0})) == []
    assert sel.window_size(profile) == 1


def test_unquoted_words_standing_together_rank_and_read_as_one_match(selector: Selector) -> None:
    profile = Profile("multi-task learning", (), 3, NOW - timedelta(days=1), NOW)
    picks = selector.select(profile)
    assert any("Multi-Task Learning in NLP" in p.entry.title for p in picks)
    assert picks[0].reason.startswith("matches: multi-task learning · ")


@pytest.mark.parametrize("topics", ["", "KV cache", '"attention heads" -survey', "retrieval"])
def test_explain_gives_the_reasons_select_gave(selector: Selector, topics: str) -> None:
    profile = Profile(topics, (), 8, NOW - timedelta(days=1), NOW)
    picks = selector.select(profile)
    assert picks
    ids = [p.entry.id or 0 for p in picks]
    assert selector.explain(profile, ids) == {p.entry.id: p.reason for p in picks}
    # Even when a sent paper would be left out today (already sent: excluded), or when an
    # unrelated id is asked for, the answer covers only what matches.
    assert selector.explain(profile, [ids[0], 10_000]) == {ids[0]: picks[0].reason}


def test_a_ticked_category_keeps_the_uncategorized_trending_papers() -> None:
    """Hugging Face papers carry no arXiv category: ticking cs.LG narrows the arXiv papers
    and keeps them (the issue's case: SMILESGNN came first, Successor Heads was hidden)."""
    hf = seed_entries(NOW - timedelta(hours=3))  # no categories, like HF Daily Papers
    body = (FIXTURES / "arxiv-rss/current/atom_cs.LG_2026-09-25_trimmed.xml").read_bytes()
    arxiv = [normalize(item, NOW) for item in parse_document(body, {}).items]
    assert any("SMILESGNN" in a.title for a in arxiv)
    papers = hf + [
        Entry(
            id=100 + n,
            canonical_key=a.canonical_key,
            title=a.title,
            summary=a.summary,
            categories=a.categories,
            published_at=NOW - timedelta(hours=1),
            ingested_at=NOW - timedelta(hours=1),
        )
        for n, a in enumerate(arxiv)
    ]
    sel = Selector(papers)
    ticked = titles(sel, '"attention heads" interpretability', categories=("cs.LG",))
    assert ticked[0].startswith("Successor Heads")
    # ... and the category still narrows the papers that have categories.
    assert not any(a.title in ticked for a in arxiv if "cs.LG" not in a.categories)
