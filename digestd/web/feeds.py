"""The trending list as feeds: RSS 2.0 (feedgen) and JSON Feed 1.1 (json.dumps of a dict).

Feed text is untrusted (it came from other feeds): feedgen escapes it for XML, json.dumps
for JSON, and the one HTML field of each item is built with markupsafe, which escapes
every value it formats in. Links are http(s) only (`render.safe_url`); a paper without one
links to its day in the archive. Guids are the papers' canonical keys (e.g. an arXiv id),
so a paper keeps its guid whatever the day or source.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from feedgen.feed import FeedGenerator
from markupsafe import Markup

from digestd import __version__
from digestd.core.config import Settings
from digestd.ranking.trending import FeedDay

JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
RSS_TYPE = "application/rss+xml; charset=utf-8"
JSON_FEED_TYPE = "application/feed+json; charset=utf-8"


def _item_html(paper: dict[str, Any]) -> str:
    parts = [Markup("<p>{}</p>").format(paper["gist"])] if paper["gist"] else []
    if paper["authors"]:
        parts.append(Markup("<p>{}</p>").format(paper["authors"]))
    facts = []
    if paper["upvotes"]:
        facts.append(Markup("{} upvotes").format(paper["upvotes"]))
    if paper["code_url"]:
        facts.append(Markup('<a href="{}">Code</a>').format(paper["code_url"]))
    if paper["source"]:
        facts.append(Markup("{}").format(paper["source"]))
    if facts:
        parts.append(Markup("<p>{}</p>").format(Markup(" · ").join(facts)))
    return str(Markup("").join(parts))


def _items(base_url: str, days: list[FeedDay]) -> list[tuple[dict[str, Any], str]]:
    # Newest day first, each day in trending order; (paper, its link).
    return [
        (paper, paper["url"] or f"{base_url}/archive/{day.day.isoformat()}")
        for day in days
        for paper in day.papers
    ]


def rss(settings: Settings, days: list[FeedDay], updated: datetime) -> bytes:
    """RSS 2.0 with atom:link rel=self (feed readers use it to find the feed's own URL)."""
    base = settings.base_url
    fg = FeedGenerator()
    fg.load_extension("dc", atom=False, rss=True)
    fg.title(settings.page_title)
    fg.description(settings.page_blurb)
    # The channel's <link> is the last one given: self (atom:link) first, then the page.
    fg.link(href=f"{base}/feed.xml", rel="self")
    fg.link(href=f"{base}/", rel="alternate")
    fg.language("en")
    fg.generator("digestd", version=__version__)
    fg.lastBuildDate(updated)
    fg.ttl(60)
    for paper, link in _items(base, days):
        fe = fg.add_entry(order="append")
        fe.guid(paper["key"], permalink=False)
        fe.title(paper["title"])
        fe.link(href=link)
        fe.description(_item_html(paper))
        fe.pubDate(paper["published_at"])
        for category in paper["tags"]:
            fe.category(term=category)
        if paper["author_names"]:
            fe.dc.dc_creator(paper["author_names"])  # one dc:creator per author
    return bytes(fg.rss_str(pretty=False))


def json_feed(settings: Settings, days: list[FeedDay]) -> bytes:
    """JSON Feed 1.1; `_paper` carries upvotes and the code link (digestd reads it back)."""
    base = settings.base_url
    items = []
    for paper, link in _items(base, days):
        item: dict[str, Any] = {
            "id": paper["key"],
            "url": link,
            "title": paper["title"],
            "content_html": _item_html(paper),
            "date_published": paper["published_at"].isoformat(),
        }
        if paper["gist"]:
            item["summary"] = paper["gist"]
        if paper["author_names"]:
            # One author object per author (JSON Feed 1.1), not one "A, B, C et al." string.
            item["authors"] = [{"name": name} for name in paper["author_names"]]
        if paper["tags"]:
            item["tags"] = paper["tags"]
        # digestd's extension (see ingest/parse_jsonfeed.py): another digestd can read it.
        item["_paper"] = {"upvotes": paper["upvotes"]}
        if paper["code_url"]:
            item["_paper"]["code_url"] = paper["code_url"]
        items.append(item)
    doc = {
        "version": JSON_FEED_VERSION,
        "title": settings.page_title,
        "home_page_url": f"{base}/",
        "feed_url": f"{base}/feed.json",
        "description": settings.page_blurb,
        "language": "en",
        "items": items,
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
