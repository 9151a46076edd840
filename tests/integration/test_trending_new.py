"""Trending means new: a paper enters a digest when first seen, only if it was published (or
listed on Hugging Face) recently; the home page and archive place it on that day, so a new
source's back catalogue floods neither a digest nor the home page. Real ingestion of real
captured feeds, SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Entry
from digestd.core.paths import data_dir
from digestd.ingest.run import ingest_file
from digestd.ranking.select import Selector
from tests.support.smtp import SmtpTestServer
from tests.support.web import harness

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ingest"
# 20 arXiv papers published on 2026-04-29 between 16:01 and 17:59 UTC.
ARXIV = FIXTURES / "arxiv-api/current/query_cat-cs.LG_OR_cat-cs.AI_max20_2026-04-30.xml"
# 30 Hugging Face papers listed on 2026-06-12, published on arXiv up to two weeks before.
HF = FIXTURES / "hf-daily-papers/api/daily_papers_2026-06-12_raw.json"
SEEDS = str(data_dir("seeds") / "trending-papers.json")


def page_titles(html: str) -> list[str]:
    found = re.findall(r'<h3 class="paper-title">(?:<a href="[^"]*">)?(.*?)(?:</a>)?</h3>', html)
    return [unescape(t) for t in found]


def window_titles(app: AppContext, hours: int = 24) -> set[str]:
    """What a first daily digest sent now chooses from."""
    now = app.now()
    with session_scope(app.engine) as s:
        selector = Selector.load(s, now - timedelta(hours=hours), now)
        return {d.entry.title for d in selector._docs}


def arxiv_titles(app: AppContext) -> set[str]:
    with session_scope(app.engine) as s:
        return {e.title for e in s.exec(select(Entry)) if e.canonical_key.startswith("arxiv:26")}


async def test_a_new_sources_back_catalogue_floods_neither_a_digest_nor_the_home_page(
    app: AppContext, smtp_server: SmtpTestServer, clock: Any
) -> None:
    clock.set(datetime(2026, 5, 20, 8, 0, tzinfo=UTC))
    assert (await ingest_file(app, SEEDS)).new == 61  # today's papers
    assert (await ingest_file(app, str(ARXIV))).new == 20  # three weeks old: a back catalogue
    old = arxiv_titles(app)
    assert len(old) == 20
    digest = window_titles(app)
    assert len(digest) == 61 and not digest & old
    async with harness(app, smtp_server) as web, web.client() as client:
        home = (await client.get("/")).text
        day = (await client.get("/archive/2026-04-29")).text
        archive = (await client.get("/archive")).text
    assert not set(page_titles(home)) & old
    assert set(page_titles(day)) == old  # on the day they were published
    assert re.search(r"Wed 29 Apr 2026.{0,200}20 papers", archive, re.DOTALL)


async def test_a_late_paper_is_mailed_once_and_placed_on_its_publication_day(
    app: AppContext, smtp_server: SmtpTestServer, clock: Any
) -> None:
    # First seen a day and a half after publication: still new, so the digest of the
    # window it arrived in carries it; the pages show it on 29 April, not today.
    clock.set(datetime(2026, 5, 1, 6, 0, tzinfo=UTC))
    await ingest_file(app, str(ARXIV))
    papers = arxiv_titles(app)
    assert window_titles(app) == papers
    async with harness(app, smtp_server) as web, web.client() as client:
        home = (await client.get("/")).text
        day = (await client.get("/archive/2026-04-29")).text
    assert "No papers yet today." in home
    assert set(page_titles(day)) == papers


async def test_the_age_limit_is_a_setting(
    app: AppContext, smtp_server: SmtpTestServer, clock: Any
) -> None:
    app.settings = Settings(**{**app.settings.__dict__, "paper_max_age_days": 1})
    clock.set(datetime(2026, 5, 1, 6, 0, tzinfo=UTC))  # 36 hours after publication
    await ingest_file(app, str(ARXIV))
    assert window_titles(app) == set()


@pytest.mark.backend  # ingestion's inserts on PostgreSQL
async def test_hugging_face_papers_are_placed_on_their_day_there(
    app: AppContext, smtp_server: SmtpTestServer, clock: Any
) -> None:
    """HF lists papers published on arXiv up to two weeks earlier: they are news on the HF
    day (submittedOnDailyAt), on the home page and in digests."""
    clock.set(datetime(2026, 6, 12, 10, 0, tzinfo=UTC))
    assert (await ingest_file(app, str(HF))).new == 30
    with session_scope(app.engine) as s:
        entries = list(s.exec(select(Entry)))
    assert min(e.published_at for e in entries) < datetime(2026, 6, 1, tzinfo=UTC)
    assert {e.listed_at for e in entries} == {datetime(2026, 6, 12, tzinfo=UTC)}
    assert len(window_titles(app)) == 30
    async with harness(app, smtp_server) as web, web.client() as client:
        home = (await client.get("/")).text
    assert len(page_titles(home)) == 30


async def test_an_old_paper_hugging_face_lists_today_moves_to_today_on_the_pages(
    app: AppContext, smtp_server: SmtpTestServer, clock: Any, tmp_path: Path
) -> None:
    """A back-catalogue paper that Hugging Face lists today is news today on the pages (it
    was never mailed as new: digests take papers when first seen)."""
    clock.set(datetime(2026, 5, 20, 8, 0, tzinfo=UTC))
    await ingest_file(app, str(ARXIV))
    listing = tmp_path / "hf.json"
    listing.write_text(
        '[{"paper": {"id": "2604.26951", "title": "Turning the TIDE", "summary": "x",'
        ' "publishedAt": "2026-04-29T16:01:42Z", "submittedOnDailyAt": "2026-05-20T00:00:00Z",'
        ' "upvotes": 12, "authors": []}}]',
        encoding="utf-8",
    )
    assert (await ingest_file(app, str(listing))).updated == 1
    async with harness(app, smtp_server) as web, web.client() as client:
        home = page_titles((await client.get("/")).text)
    assert [t for t in home if t.startswith("Turning the TIDE")] and len(home) == 1
    assert window_titles(app) == set()
