"""RSS 0.9x/1.0/2.0 and Atom (arXiv RSS, legacy RDF, arXiv API) via feedparser."""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import feedparser
from feedparser.exceptions import CharacterEncodingOverride, NonXMLContentType

from digestd.ingest.parse_hf_rss import split_labelled
from digestd.ingest.types import ParseResult, RawItem

_TAG = re.compile(r"</?[A-Za-z][^>]*>")
ARXIV_API_MARKERS = ("arxiv.org/api/", "arxiv query:", "arxiv search results")


def parse_xml(body: bytes, headers: Mapping[str, str]) -> Any:
    """feedparser's result for a document; bytes only, so feedparser never fetches anything."""
    wanted = {k.lower(): v for k, v in headers.items() if k.lower() in _PASSED_HEADERS}
    if wanted and "content-type" not in wanted:
        # feedparser flags a missing type as damage; a server that omits it sent XML anyway.
        wanted["content-type"] = "application/xml"
    # feedparser's own sanitizer is off: nh3 does it (text.py), consistently for all formats.
    return feedparser.parse(body, response_headers=wanted, sanitize_html=False)


_PASSED_HEADERS = ("content-type", "content-location", "content-language")


def is_arxiv_api(doc: Any) -> bool:
    """True for export.arxiv.org/api/query responses (ids, titles and opensearch markers)."""
    feed = doc.get("feed", {})
    text = f"{feed.get('id', '')} {feed.get('title', '')}".lower()
    return "opensearch" in doc.get("namespaces", {}) and any(m in text for m in ARXIV_API_MARKERS)


def _when(entry: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if value:
            try:
                return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
            except (OverflowError, ValueError, OSError):
                continue
    return None


def _is_html(detail: Any) -> bool:
    return "html" in str((detail or {}).get("type") or "text/html")


def _looks_like_html(text: str) -> bool:
    return bool(_TAG.search(text))


def _item(entry: Any, atom: bool) -> RawItem:
    links = [str(link.get("href") or "") for link in entry.get("links", []) if link.get("href")]
    pdf = next(
        (
            str(link.get("href"))
            for link in entry.get("links", [])
            if link.get("type") == "application/pdf" or link.get("title") == "pdf"
        ),
        None,
    )
    summary, summary_detail = entry.get("summary", ""), entry.get("summary_detail")
    for content in entry.get("content", []):
        value = content.get("value") or ""
        if len(value) > len(summary):
            summary, summary_detail = value, content
    authors = [str(a.get("name")) for a in entry.get("authors", []) if a.get("name")]
    if not authors and entry.get("author"):
        authors = [str(entry.get("author"))]
    categories = []
    primary = entry.get("arxiv_primary_category") or {}
    if primary.get("term"):
        categories.append(str(primary["term"]))
    categories += [str(t.get("term")) for t in entry.get("tags", []) if t.get("term")]
    summary_is_html, upvotes = _is_html(summary_detail), None
    # A community Hugging Face Daily Papers feed: authors, upvotes and abstract in one blob.
    labelled = split_labelled(str(summary or ""), summary_is_html)
    if labelled is not None:
        summary, summary_is_html, upvotes = labelled.summary, False, labelled.upvotes
        authors = authors or labelled.authors
    return RawItem(
        guid=str(entry.get("id") or ""),
        title=str(entry.get("title") or ""),
        # Atom says what a title is (type="text" means literal brackets); RSS does not, and
        # feeds put escaped markup in titles, so an RSS title that looks like HTML is HTML.
        title_is_html=_is_html(entry.get("title_detail"))
        or (not atom and _looks_like_html(str(entry.get("title") or ""))),
        link=str(entry.get("link") or ""),
        links=links,
        summary=str(summary or ""),
        summary_is_html=summary_is_html,
        authors=authors,
        upvotes=upvotes,
        categories=categories,
        published=_when(entry),
        doi=entry.get("arxiv_doi"),
        pdf_url=pdf,
        announce_type=entry.get("arxiv_announce_type"),
    )


def _ends_early(bozo: Any, body: bytes) -> bool:
    """True when the XML error sits on the document's last lines: a cut-off download."""
    line = getattr(bozo, "getLineNumber", lambda: None)()
    if not (isinstance(line, int) and line >= body.rstrip().count(b"\n")):
        return False
    last = max(body.rfind(b"<item"), body.rfind(b"<entry"))
    return last < 0 or not re.search(rb"</(?:\w+:)?(?:item|entry)>", body[last:])


def items_from_feed(doc: Any, kind: str, body: bytes = b"") -> ParseResult:
    """Raw items of a feedparser result; an unusable document becomes `error`."""
    result = ParseResult(kind=kind)
    entries = doc.get("entries", [])
    bozo = doc.get("bozo") and doc.get("bozo_exception")
    reason = str(bozo).strip().splitlines()[0] if bozo else ""
    # Charset disagreements are recoverable: feedparser decoded the document anyway.
    damaged = bozo and not isinstance(bozo, (CharacterEncodingOverride, NonXMLContentType))
    if not entries:
        if not doc.get("version"):
            result.error = "not a recognized RSS, Atom, JSON Feed or HF papers document"
            if bozo:
                result.error += f" ({reason or type(bozo).__name__})"
        elif damaged:
            result.error = f"feed is not well-formed and no item could be read ({reason})"
        return result  # a valid feed with no items (arXiv on weekends) is healthy
    if kind == "arxiv_api":
        for entry in entries:
            if "/api/errors" in str(entry.get("id", "")):
                result.error = f"arXiv API error: {entry.get('summary') or entry.get('title')}"
                return result
    if damaged:
        result.warning = f"feed is not well-formed ({reason}); kept what parsed"
        if _ends_early(bozo, body) and entries:
            # The last item of a cut-off document is cut off too: keep it out rather
            # than store a truncated abstract that a later complete fetch won't repair.
            entries = entries[:-1]
            result.rejected.append(f"item {len(entries) + 1}: cut off where the document ends")
    atom = str(doc.get("version", "")).startswith("atom")
    for n, entry in enumerate(entries, 1):
        try:
            result.items.append(_item(entry, atom))
        except (TypeError, ValueError, AttributeError) as exc:
            result.rejected.append(f"item {n}: unreadable ({exc})")
    return result
