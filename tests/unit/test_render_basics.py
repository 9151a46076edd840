"""Rendering basics: subject, placeholders filled per subscriber, escaping of feed content."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from digestd.core.config import Settings
from digestd.core.models import Entry
from digestd.mail.render import Renderer, excerpt, shorten_authors
from digestd.ranking.select import Pick, Profile

NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
PROFILE = Profile("", (), 10, NOW - timedelta(days=1), NOW)


def _entry(n: int, **kw: object) -> Entry:
    base: dict[str, object] = dict(
        id=n,
        canonical_key=f"k{n}",
        url=f"https://arxiv.org/abs/2611.{n:05d}",
        title=f"Paper {n}",
        summary="First sentence. Second sentence. Third one. Fourth.",
        authors=["Ada Lovelace"],
        categories=["cs.LG"],
        published_at=NOW,
        ingested_at=NOW,
        upvotes=5,
    )
    base.update(kw)
    return Entry(**base)  # type: ignore[arg-type]


def test_personalize_fills_address_and_links_in_both_parts() -> None:
    r = Renderer(Settings(from_address="Papers <papers@example.org>"))
    body = r.render_digest(
        PROFILE, [Pick(_entry(1), 1.0, "trending · 5 upvotes")], day=NOW.date(), fmt="html"
    )
    assert body.subject == "Paper 1 · Thu 26 Nov"
    mail = r.personalize(
        body,
        email="o'neil@example.org",
        unsubscribe_url="https://d.example/unsubscribe/TOK1",
        preferences_url="https://d.example/preferences/TOK2",
        view_url="https://d.example/view/TOK3/2026-11-26",
    )
    assert mail.html is not None
    assert 'href="https://d.example/unsubscribe/TOK1"' in mail.html
    assert 'href="https://d.example/preferences/TOK2"' in mail.html
    assert "o&#x27;neil@example.org" in mail.html
    assert "Unsubscribe: https://d.example/unsubscribe/TOK1" in mail.text
    assert 'href="https://d.example/view/TOK3/2026-11-26"' in mail.html
    assert "View in your browser: https://d.example/view/TOK3/2026-11-26" in mail.text
    assert "o'neil@example.org" in mail.text
    assert body.marker not in mail.html and body.marker not in mail.text
    assert "Papers &lt;papers@example.org&gt;" in mail.html


def test_authors_shortened_and_excerpt_two_to_three_sentences() -> None:
    assert shorten_authors(["A", "B", "C", "D"]) == "A, B, C et al."
    assert shorten_authors(["A", "B"]) == "A, B"
    assert excerpt("One. Two. Three. Four.") == "One. Two. Three."
