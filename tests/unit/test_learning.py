"""The learned model: bounded in size, fading with age, liked papers kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from digestd.ranking import learning
from digestd.ranking.select import Profile, Selector, Taste
from digestd.subscribers.votes import VoteRow
from tests.support.digests import seed_entries

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


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
    assert len(model.terms) <= learning.MAX_TERMS
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
