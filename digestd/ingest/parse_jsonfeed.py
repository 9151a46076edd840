"""JSON Feed 1.0 / 1.1, with digestd's `_paper` extension (upvotes, code_url, arxiv_id)."""

from __future__ import annotations

from typing import Any

from digestd.ingest.coerce import as_dict, as_int, as_list, as_str, parse_datetime
from digestd.ingest.types import ParseResult, RawItem

VERSION_PREFIX = "https://jsonfeed.org/version/"


def looks_like_jsonfeed(doc: Any) -> bool:
    """A JSON object whose `version` names a JSON Feed version."""
    return isinstance(doc, dict) and as_str(doc.get("version")).startswith(VERSION_PREFIX)


def _names(obj: dict[str, Any]) -> list[str]:
    people = as_list(obj.get("authors")) or ([obj["author"]] if "author" in obj else [])
    return [as_str(as_dict(p).get("name")) for p in people if as_str(as_dict(p).get("name"))]


def _item(item: dict[str, Any], feed_authors: list[str]) -> RawItem:
    paper = as_dict(item.get("_paper"))
    html = as_str(item.get("content_html"))
    text = as_str(item.get("content_text")) or as_str(item.get("summary"))
    url = as_str(item.get("url")) or as_str(item.get("external_url"))
    return RawItem(
        guid=as_str(item.get("id")),
        title=as_str(item.get("title")),
        title_is_html=False,  # the spec says titles are plain text
        link=url,
        links=[u for u in (as_str(item.get("external_url")),) if u],
        summary=html or text,
        summary_is_html=bool(html),
        authors=_names(item) or feed_authors,
        categories=[as_str(t) for t in as_list(item.get("tags"))],
        published=parse_datetime(item.get("date_published"))
        or parse_datetime(item.get("date_modified")),
        upvotes=as_int(paper.get("upvotes")),
        comments=as_int(paper.get("comments")),
        arxiv_id=as_str(paper.get("arxiv_id")) or None,
        code_url=as_str(paper.get("code_url")) or None,
    )


def items_from_jsonfeed(doc: dict[str, Any]) -> ParseResult:
    """Raw items of a JSON Feed; an item that is not an object or has no id is rejected."""
    result = ParseResult(kind="jsonfeed")
    items = doc.get("items")
    if not isinstance(items, list):
        result.error = "JSON Feed has no `items` array"
        return result
    feed_authors = _names(doc)
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict):
            result.rejected.append(f"item {n}: not a JSON object")
            continue
        if not as_str(item.get("id")).strip():
            result.rejected.append(f"item {n}: no `id` (required by JSON Feed)")
            continue
        result.items.append(_item(item, feed_authors))
    return result
