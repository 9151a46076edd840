"""Followed authors lead a digest whatever their papers' scores; muted authors never enter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from digestd.core.models import Entry
from digestd.ranking.select import Profile, Selector
from tests.support.digests import seed_entries

NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
SEEN = NOW - timedelta(hours=2)
FOLLOW = "by Yann LeCun, whom you follow"


def paper(n: int, title: str, authors: list[str], **fields: object) -> Entry:
    return Entry(
        id=n,
        canonical_key=f"test:{n}",
        url=f"https://papers.example.org/{n}",
        title=title,
        summary=f"{title}. We study it.",
        authors=authors,
        published_at=SEEN,
        ingested_at=SEEN,
        **fields,
    )


# Papers no topic, category or upvote would put in a digest about attention heads, by
# LeCun as three feeds spell him, and one by another LeCun.
LECUN = [
    paper(101, "Grasping Soft Objects", ["LeCun, Yann", "B. Roboticist"], categories=["cs.RO"]),
    paper(102, "A Note on Energy Models", ["Y. LeCun"], upvotes=1),
    paper(103, "World Models Revisited", ["Ada Lovelace", "Yann A. Le Cun"]),
    paper(104, "Soil Moisture Maps", ["Yves LeCun"]),
]
# The paper the topics match best, by an author the reader mutes.
MUTED = paper(
    105,
    "Interpretable Attention Heads: Attention Heads Explained",
    ["Percy Liang"],
    upvotes=900,
    categories=["cs.CL"],
)


def selector() -> Selector:
    return Selector([*seed_entries(SEEN), *LECUN, MUTED])


def profile(topics: str = '"attention heads"', **kw: object) -> Profile:
    args: dict[str, object] = {
        "categories": ("cs.CL",),
        "max_items": 6,
        "follows": ("Yann LeCun",),
        "muted_authors": ("Liang, P.",),
        **kw,
    }
    return Profile(topics, window_start=NOW - timedelta(days=1), window_end=NOW, **args)  # type: ignore[arg-type]


def test_followed_papers_lead_and_muted_ones_never_enter() -> None:
    picks = selector().select(profile())
    ids = [p.entry.id for p in picks]
    # All three spellings of Yann LeCun lead (upvoted first), outside the categories and
    # topics; Yves LeCun is not followed; the muted best match is gone; the digest is full.
    assert ids[:3] == [102, 101, 103]
    assert [p.reasons[0] for p in picks[:3]] == [FOLLOW] * 3
    assert picks[0].reasons == [FOLLOW, "1 upvote"]
    assert 104 not in ids and 105 not in ids and len(ids) == 6
    assert all(p.reason.startswith("matches: attention heads") for p in picks[3:])


def test_every_profile_kind_puts_follows_first() -> None:
    sel = selector()
    for topics in ("", "attention heads -energy"):
        picks = sel.select(profile(topics, categories=(), max_items=4))
        ids = [p.entry.id for p in picks]
        assert 105 not in ids and len(ids) == 4
        # An excluded word is the reader's own limit: it keeps out a followed paper too.
        lead = [101, 103] if "-energy" in topics else [102, 101, 103]
        assert ids[: len(lead)] == lead


def test_sent_before_and_more_follows_than_room() -> None:
    sel = selector()
    picks = sel.select(profile(max_items=2), frozenset({102}))
    assert [p.entry.id for p in picks] == [101, 103]  # never twice, capped at max_items


def test_a_sent_digest_explains_its_follows_again() -> None:
    reasons = selector().explain(profile(), [101, 104, 7])
    assert reasons[101] == FOLLOW and reasons[7].startswith("matches: attention heads")
    assert 104 not in reasons  # neither followed nor matching: no reason
