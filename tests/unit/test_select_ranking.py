"""Ranking on the seed papers: the plainly relevant papers come first, exclusions hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from digestd.select import Profile, Selector
from tests.support.digests import seed_entries

NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)


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
