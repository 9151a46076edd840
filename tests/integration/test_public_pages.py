"""The public trending page, archive and feeds over ASGI, on SQLite and PostgreSQL: the seed
papers ingested for real, the digest ranking, conditional GET, query counts, hostile text."""

from __future__ import annotations

import asyncio
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

import feedparser
import pytest
from sqlalchemy import event
from sqlmodel import select

from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Entry, Source
from digestd.core.paths import data_dir
from digestd.ingest.run import ingest_file
from digestd.ranking.select import Profile, Selector
from tests.support.digests import add_subscriber
from tests.support.smtp import SmtpTestServer
from tests.support.web import BASE_URL, WebHarness, harness

INGESTED = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)  # the conftest clock's start
ATOM = "{http://www.w3.org/2005/Atom}"


@pytest.fixture
async def site(app: AppContext, smtp_server: SmtpTestServer, clock: Any) -> AsyncIterator[Any]:
    """The seed papers ingested through the real JSON Feed path at 06:00; the clock at 09:00."""
    report = await ingest_file(app, str(data_dir("seeds") / "trending-papers.json"))
    assert (report.status, report.new) == ("ok", 61), report
    clock.set(INGESTED + timedelta(hours=3))
    with session_scope(app.engine) as s:
        add_subscriber(s, "private.person@example.org", INGESTED)
    async with harness(app, smtp_server) as web:
        yield web


def digest_titles(ctx: AppContext, limit: int) -> list[str]:
    """What a daily digest without topics, sent now for the first time, would list."""
    now = ctx.now()
    with session_scope(ctx.engine) as s:
        start = now - timedelta(days=1)
        picks = Selector.load(s, start, now).select(Profile("", (), limit, start, now))
        return [p.entry.title for p in picks]


def page_titles(html: str) -> list[str]:
    found = re.findall(r'<h3 class="paper-title">(?:<a href="[^"]*">)?(.*?)(?:</a>)?</h3>', html)
    return [unescape(t) for t in found]


@contextmanager
def statements(ctx: AppContext) -> Iterator[list[str]]:
    """Every SQL statement the engine runs inside the block."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        if not sql.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK", "SELECT 1")):
            seen.append(sql)

    event.listen(ctx.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(ctx.engine, "before_cursor_execute", record)


async def test_home_lists_todays_papers_in_the_digest_ranking_under_the_form(
    site: WebHarness,
) -> None:
    async with site.client() as client:
        response = await client.get("/")
    assert response.status_code == 200
    html = response.text
    size = site.ctx.settings.page_size
    assert page_titles(html) == digest_titles(site.ctx, size)
    assert len(page_titles(html)) == size == 30
    # The form comes first, then the papers, each with its facts.
    assert html.index('action="/subscribe"') < html.index('<ol class="papers">')
    first = html[html.index('<li class="paper"') : html.index("</li>")]
    assert "132 upvotes" in first and 'href="https://github.com/weeknan/DR-Tune">Code' in first
    assert '<span class="source">trending-papers.json</span>' in first or "source" in first
    # Its gist: the abstract's sentence stating the contribution, not its opening.
    assert '<p class="gist">To deal with these issues, we propose a novel fine-tuning' in first
    # Feed readers find the feeds from any page; nothing comes from another site.
    assert '<link rel="alternate" type="application/rss+xml"' in html
    assert '<link rel="alternate" type="application/feed+json"' in html
    for attr in re.findall(r'<(?:script|link|img|iframe)[^>]*(?:src|href)="([^"]*)"', html):
        assert attr.startswith("/") or attr.startswith("data:"), attr
    # Public: papers only.
    assert "private.person" not in html


@pytest.mark.backend  # the archive's date() grouping on PostgreSQL
async def test_no_papers_yet_is_said_plainly(app: AppContext, smtp_server: SmtpTestServer) -> None:
    async with harness(app, smtp_server) as web, web.client() as client:
        html = (await client.get("/")).text
        archive = (await client.get("/archive")).text
    assert "No papers yet today." in html and '<ol class="papers">' not in html
    assert 'action="/subscribe"' in html
    assert "No papers yet." in archive


async def test_earlier_days_and_the_archive(site: WebHarness, clock: Any) -> None:
    # Two days later the seed papers are an earlier day; today has none.
    clock.set(INGESTED + timedelta(days=2))
    async with site.client() as client:
        today = (await client.get("/")).text
        archive = await client.get("/archive")
        by_query = await client.get("/?date=2026-11-26")
        by_path = await client.get("/archive/2026-11-26")
        empty_day = await client.get("/archive/2026-11-27")
        future = await client.get("/archive/2026-12-01")
        bad = await client.get("/?date=26.11.2026")
        impossible = await client.get("/archive/2026-02-30")
    assert "No papers yet today." in today
    assert archive.status_code == 200
    assert re.findall(r'href="/archive/([0-9-]+)"', archive.text) == ["2026-11-26"]
    assert "61 papers" in archive.text
    assert by_query.status_code == by_path.status_code == 200
    clock.set(INGESTED + timedelta(hours=3))
    assert page_titles(by_path.text) == page_titles(by_query.text)
    assert page_titles(by_path.text) == digest_titles(site.ctx, 30)
    assert "Trending on Thu 26 Nov 2026" in by_path.text
    assert "No papers for this day." in empty_day.text
    assert future.status_code == 404
    assert bad.status_code == 400 and "A day looks like 2026-11-26" in bad.text
    assert impossible.status_code == 400


@pytest.mark.backend  # the pages' paging counts on PostgreSQL
async def test_a_day_pages_through_all_its_papers(site: WebHarness, clock: Any) -> None:
    """61 papers, 30 a page: three pages numbered 1-30, 31-60, 61, each linking on."""
    clock.set(INGESTED + timedelta(days=2))
    async with site.client() as client:
        pages = [(await client.get(f"/archive/2026-11-26?page={n}")).text for n in (1, 2, 3)]
        first = (await client.get("/archive/2026-11-26")).text
        past = await client.get("/archive/2026-11-26?page=4")
        bad = await client.get("/archive/2026-11-26?page=two")
    assert first == pages[0]
    titles = [page_titles(p) for p in pages]
    assert [len(t) for t in titles] == [30, 30, 1]
    clock.set(INGESTED + timedelta(hours=3))
    assert [t for page in titles for t in page] == digest_titles(site.ctx, 61)  # once, in order
    assert "Papers 1–30 of 61" in pages[0] and "Papers 31–60 of 61" in pages[1]
    assert '<ol class="papers" start="31">' in pages[1] and 'id="paper-61"' in pages[2]
    assert 'href="/archive/2026-11-26?page=2" rel="next"' in pages[0]
    assert 'href="/archive/2026-11-26" rel="prev"' in pages[1]
    assert 'rel="next"' not in pages[2] and "Page 3 of 3" in pages[2]
    assert past.status_code == 404 and bad.status_code == 400
    # Today's list pages the same way.
    async with site.client() as client:
        home = (await client.get("/")).text
        home2 = (await client.get("/?page=2")).text
    assert 'href="/?page=2" rel="next"' in home and len(page_titles(home2)) == 30


async def test_revalidation_is_a_304_without_loading_or_rendering(site: WebHarness) -> None:
    cache = site.app.state.web.pages
    async with site.client() as client:
        with statements(site.ctx) as cold:
            first = await client.get("/")
        # One query for the validators, one for all the papers: never one per paper.
        assert len(cold) == 2, cold
        etag, modified = first.headers["etag"], first.headers["last-modified"]
        renders = cache.renders
        with statements(site.ctx) as revalidate:
            again = await client.get("/", headers={"If-None-Match": etag})
            by_date = await client.get("/", headers={"If-Modified-Since": modified})
        assert again.status_code == by_date.status_code == 304
        assert again.content == b"" and again.headers["etag"] == etag
        assert len(revalidate) == 2  # the validators' query only, per request
        assert cache.renders == renders
        # A plain GET of an unchanged page is served from the cache: no papers loaded.
        with statements(site.ctx) as warm:
            cached = await client.get("/")
        assert len(warm) == 1 and cached.text == first.text

        # New upvotes (a source reporting new counts) change the page and its validators.
        with session_scope(site.ctx.engine) as s:
            last = s.exec(select(Entry).order_by(Entry.upvotes)).first()  # type: ignore[arg-type]
            assert last is not None
            last.upvotes, last.updated_at = 1000, site.ctx.now()
            title = last.title
        changed = await client.get("/", headers={"If-None-Match": etag})
        assert changed.status_code == 200 and changed.headers["etag"] != etag
        assert page_titles(changed.text)[0] == title


async def test_a_sliding_window_changes_the_page_when_papers_leave(
    site: WebHarness, clock: Any
) -> None:
    async with site.client() as client:
        first = await client.get("/")
        clock.set(INGESTED + timedelta(days=1, minutes=1))  # the seed papers left the window
        later = await client.get("/", headers={"If-None-Match": first.headers["etag"]})
        since = await client.get("/", headers={"If-Modified-Since": first.headers["last-modified"]})
    assert later.status_code == since.status_code == 200
    assert "No papers yet today." in later.text


async def test_feeds_parse_with_stable_guids_and_revalidate(site: WebHarness) -> None:
    async with site.client() as client:
        rss = await client.get("/feed.xml")
        jf = await client.get("/feed.json")
        assert rss.headers["content-type"].startswith("application/rss+xml")
        assert jf.headers["content-type"].startswith("application/feed+json")
        for response in (rss, jf):
            for headers in (
                {"If-None-Match": response.headers["etag"]},
                {"If-Modified-Since": response.headers["last-modified"]},
            ):
                again = await client.get(response.request.url.path, headers=headers)
                assert again.status_code == 304, (response.request.url.path, headers)

    expected = digest_titles(site.ctx, 30)
    parsed = feedparser.parse(rss.content)
    assert not parsed.bozo, parsed.bozo_exception
    assert parsed.version == "rss20"
    assert [e.title for e in parsed.entries] == expected
    assert {link.rel: link.href for link in parsed.feed.links}["self"] == f"{BASE_URL}/feed.xml"
    channel = ET.fromstring(rss.content).find("channel")
    assert channel is not None
    self_link = channel.find(f"{ATOM}link")
    assert self_link is not None and self_link.get("rel") == "self"

    doc = jf.json()
    check_json_feed_1_1(doc)
    assert [i["title"] for i in doc["items"]] == expected
    # Guids: the papers' canonical keys, the same in both feeds and on every fetch.
    with session_scope(site.ctx.engine) as s:
        keys = {e.title: e.canonical_key for e in s.exec(select(Entry))}
    rss_ids = [e.id for e in parsed.entries]
    assert rss_ids == [keys[t] for t in expected] == [i["id"] for i in doc["items"]]
    assert all(not e.guidislink for e in parsed.entries)
    first_item = doc["items"][0]
    # The gist is the item's summary.
    assert first_item["summary"].startswith("To deal with these issues, we propose")
    assert first_item["_paper"] == {
        "upvotes": 132,
        "code_url": "https://github.com/weeknan/DR-Tune",
    }

    # A new day of papers: yesterday's keep their guids, today's come first.
    with session_scope(site.ctx.engine) as s:
        s.add(
            Entry(
                canonical_key="arxiv:2611.99999",
                url="https://arxiv.org/abs/2611.99999",
                title="A paper of the next day",
                summary="Fresh.",
                published_at=INGESTED + timedelta(days=1),
                ingested_at=INGESTED + timedelta(days=1),
                upvotes=1,
            )
        )
    site.ctx.clock.set(INGESTED + timedelta(days=1, hours=1))  # type: ignore[attr-defined]
    async with site.client() as client:
        later = feedparser.parse((await client.get("/feed.xml")).content)
        later_json = (await client.get("/feed.json")).json()
    assert [e.id for e in later.entries] == ["arxiv:2611.99999", *rss_ids]
    assert [i["id"] for i in later_json["items"]] == ["arxiv:2611.99999", *rss_ids]
    assert "private.person" not in rss.text + jf.text


def check_json_feed_1_1(doc: dict[str, Any]) -> None:
    """The required fields and types of JSON Feed 1.1 (https://jsonfeed.org/version/1.1)."""
    assert doc["version"] == "https://jsonfeed.org/version/1.1"
    assert isinstance(doc["title"], str) and doc["title"]
    assert isinstance(doc["items"], list)
    for key in ("home_page_url", "feed_url"):
        assert doc[key].startswith("http")
    for item in doc["items"]:
        assert isinstance(item["id"], str) and item["id"]
        assert isinstance(item.get("content_html"), str) or isinstance(
            item.get("content_text"), str
        )
        if "date_published" in item:
            datetime.fromisoformat(item["date_published"])  # RFC 3339
        for author in item.get("authors", []):
            assert isinstance(author["name"], str)
        assert all(k.startswith("_") for k in item if k not in JSON_FEED_ITEM_FIELDS)


JSON_FEED_ITEM_FIELDS = {
    "id", "url", "external_url", "title", "content_html", "content_text", "summary", "image",
    "banner_image", "date_published", "date_modified", "authors", "tags", "language",
    "attachments",
}  # fmt: skip

HOSTILE_TITLE = '<script>alert("t")</script> Attention <b onmouseover="alert(1)">heads</b>'
HOSTILE_SUMMARY = (
    'We <img src=x onerror="alert(2)"> show <a href="javascript:alert(3)">this</a>. '
    "It is <iframe src=//evil.example></iframe> fine."
)


async def test_hostile_feed_text_is_escaped_on_the_page_and_in_both_feeds(
    app: AppContext, smtp_server: SmtpTestServer
) -> None:
    now = app.now()
    with session_scope(app.engine) as s:
        source = Source(
            url="https://evil.example/feed", name='<svg onload="alert(4)">', created_at=now
        )
        s.add(source)
        s.flush()
        s.add(
            Entry(
                source_id=source.id,
                canonical_key="evil:1",
                url="javascript:alert(5)",
                code_url='javascript:alert(6)//"><script>alert(7)</script>',
                title=HOSTILE_TITLE,
                summary=HOSTILE_SUMMARY,
                authors=["Mallory <script>alert(8)</script>"],
                categories=['cs.CL"><script>alert(9)</script>'],
                published_at=now,
                ingested_at=now - timedelta(minutes=5),
                upvotes=3,
            )
        )
    async with harness(app, smtp_server) as web, web.client() as client:
        page = (await client.get("/")).text
        rss = (await client.get("/feed.xml")).content
        jf = (await client.get("/feed.json")).content

    main = page[page.index("<main") : page.index("</main>")]
    assert_inert(main)
    assert "&lt;script&gt;alert(&#34;t&#34;)&lt;/script&gt; Attention" in main
    assert "&lt;svg onload=" in main

    # RSS: the XML holds the text, and the item's HTML description holds it escaped again.
    item = ET.fromstring(rss).find("channel/item")
    assert item is not None
    assert item.findtext("title") == HOSTILE_TITLE
    description = item.findtext("description") or ""
    assert_inert(description)
    assert "&lt;img src=x onerror=" in description
    assert item.findtext("link") == f"{BASE_URL}/archive/2026-11-26"
    assert_inert(rss.decode())
    parsed = feedparser.parse(rss)
    assert not parsed.bozo and parsed.entries[0].title == HOSTILE_TITLE

    doc = json.loads(jf)
    [entry] = doc["items"]
    assert entry["title"] == HOSTILE_TITLE  # text fields are text
    assert_inert(entry["content_html"])
    assert "&lt;img src=x onerror=" in entry["content_html"]
    assert entry["url"] == f"{BASE_URL}/archive/2026-11-26" and "code_url" not in entry["_paper"]
    assert "javascript:" not in entry["url"] + json.dumps(entry["_paper"])


async def test_feeds_name_every_author_and_carry_categories_as_tags(
    app: AppContext, smtp_server: SmtpTestServer
) -> None:
    """One JSON Feed author object (and one RSS dc:creator) per author, not "A, B, C et
    al."; the categories as JSON Feed tags and RSS categories."""
    now = app.now()
    authors = ["Rhys Gould", "Euan Ong", "George Ogden", "Arthur Conmy"]
    with session_scope(app.engine) as s:
        s.add(
            Entry(
                canonical_key="arxiv:2312.09230",
                url="https://arxiv.org/abs/2312.09230",
                title="Successor Heads: Recurring, Interpretable Attention Heads In The Wild",
                summary="Background. In this work we present successor heads. They increment.",
                authors=authors,
                categories=["cs.LG", "cs.AI", "cs.CL", "stat.ML", "cs.NE"],
                published_at=now,
                ingested_at=now - timedelta(minutes=5),
            )
        )
    async with harness(app, smtp_server) as web, web.client() as client:
        rss = (await client.get("/feed.xml")).content
        doc = (await client.get("/feed.json")).json()
    [item] = doc["items"]
    assert item["authors"] == [{"name": a} for a in authors]
    assert item["tags"] == ["cs.LG", "cs.AI", "cs.CL", "stat.ML", "cs.NE"]
    assert item["summary"] == "In this work we present successor heads."
    xml_item = ET.fromstring(rss).find("channel/item")
    assert xml_item is not None
    dc = "{http://purl.org/dc/elements/1.1/}creator"
    assert [c.text for c in xml_item.findall(dc)] == authors
    assert [c.text for c in xml_item.findall("category")] == item["tags"]


def assert_inert(html: str) -> None:
    """No tag, event handler or javascript: link from the feed survives as markup."""
    for tag in ("script", "img", "iframe", "svg", "b"):
        assert not re.search(rf"<{tag}[\s>]", html, re.IGNORECASE), tag
    assert not re.search(r"<[^>]*\son\w+\s*=", html), "event handler attribute"
    assert not re.search(r"(href|src)\s*=\s*[\"']?\s*javascript:", html, re.IGNORECASE)


def test_archive_day_parsing_does_not_touch_the_database_for_bad_input(
    app: AppContext, smtp_server: SmtpTestServer
) -> None:
    async def run() -> list[int]:
        async with harness(app, smtp_server) as web, web.client() as client:
            with statements(app) as seen:
                codes = [(await client.get(p)).status_code for p in ("/archive/x", "/?date=1")]
            assert seen == []
            return codes

    assert asyncio.run(run()) == [400, 400]


async def test_settings_title_blurb_and_size(site: WebHarness) -> None:
    from dataclasses import replace

    settings = replace(
        site.ctx.settings, page_title="Lab reading list", page_blurb="What we read.", page_size=5
    )
    site.ctx.settings = settings
    async with harness(site.ctx, site.smtp) as web, web.client() as client:
        html = (await client.get("/")).text
        doc = (await client.get("/feed.json")).json()
    assert "<h1>Lab reading list</h1>" in html and "What we read." in html
    assert len(page_titles(html)) == 5 and doc["title"] == "Lab reading list"
    assert len(doc["items"]) == 5


async def test_templates_dir_overrides_the_paper_list(site: WebHarness, tmp_path: Any) -> None:
    from dataclasses import replace

    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "_papers.html").write_text(
        "{% macro paper_list(papers, show_reason=false) %}"
        "<p class=custom>{{ papers|length }} papers: {{ papers[0].title }}</p>"
        "{% endmacro %}",
        encoding="utf-8",
    )
    site.ctx.settings = replace(site.ctx.settings, templates_dir=tmp_path)
    async with harness(site.ctx, site.smtp) as web, web.client() as client:
        html = (await client.get("/")).text
    assert "<p class=custom>30 papers: DR-Tune: Improving" in html


async def test_another_digestd_reads_the_json_feed_with_upvotes_and_code_links(
    site: WebHarness, tmp_path: Any, another_sqlite: Any
) -> None:
    from digestd.core.config import Settings

    async with site.client() as client:
        body = (await client.get("/feed.json")).content
    path = tmp_path / "feed.json"
    path.write_bytes(body)
    other = AppContext(Settings(database_url=another_sqlite(tmp_path / "other.db")))
    try:
        report = await ingest_file(other, str(path))
        assert (report.status, report.kind, report.new) == ("ok", "jsonfeed", 30)
        with session_scope(other.engine) as s:
            top = s.exec(select(Entry).order_by(Entry.upvotes.desc())).first()  # type: ignore[attr-defined]
            assert top is not None
            assert (top.upvotes, top.code_url) == (132, "https://github.com/weeknan/DR-Tune")
    finally:
        other.dispose()
