"""Every kind of source that carries authors feeds following: arXiv (API, RSS, Atom),
Hugging Face Daily Papers (API and the community RSS blob) and JSON Feed."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from digestd.ingest.detect import parse_document
from digestd.ingest.normalize import normalize
from digestd.ranking.authors import AuthorSet, parse
from tests.unit.test_ingest_fixtures import FIXTURES

NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)


def authors_of(body: bytes) -> list[list[str]]:
    return [normalize(item, NOW).authors for item in parse_document(body, {}).items]


def other_spellings(name: str) -> list[str]:
    """'Alberto Del Bimbo' as others write it: 'A. Del Bimbo', 'Del Bimbo, Alberto'."""
    first, *rest = name.split()
    return [f"{first[0]}. {' '.join(rest)}", f"{' '.join(rest)}, {first}"]


@pytest.mark.parametrize(
    "rel",
    [
        "arxiv-api/current/query_cat-cs.LG_OR_cat-cs.AI_max20_2026-04-30.xml",
        "arxiv-rss/current/rss_cs.CL_2026-04-27_trimmed.xml",
        "arxiv-rss/current/atom_cs.LG_2026-09-25_trimmed.xml",
        "hf-daily-papers/api/daily_papers_2026-06-12_raw.json",
        "hf-daily-papers/community-rss/hf-daily-papers_feedgen_2026-04-30.xml",
    ],
)
def test_each_papers_authors_are_found_by_a_follow(rel: str) -> None:
    papers = authors_of((FIXTURES / rel).read_bytes())
    assert papers and all(papers), "every paper carries its authors"
    for authors in papers:
        # The last author, followed as others spell them, finds the paper.
        last = authors[-1]
        if len(last.split()) > 1 and parse(last).first:
            for follow in other_spellings(last):
                assert AuthorSet([follow]).first_match(authors) == follow, authors


def test_a_json_feed_of_papers_with_one_joined_author_string() -> None:
    """A JSON Feed listing a paper's authors as one "A, B, C et al." object: each is found."""
    doc = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "papers",
        "items": [
            {
                "id": "https://arxiv.org/abs/2401.00001",
                "url": "https://arxiv.org/abs/2401.00001",
                "title": "A paper",
                "content_text": "We show things.",
                "date_published": "2026-11-25T08:00:00Z",
                "authors": [{"name": "Yann LeCun, Percy Liang, Ada Lovelace et al."}],
            }
        ],
    }
    (authors,) = authors_of(json.dumps(doc).encode())
    for follow in ("Y. LeCun", "Liang, Percy", "Ada Lovelace"):
        assert AuthorSet([follow]).first_match(authors) == follow
