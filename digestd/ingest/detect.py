"""Which parser a document needs: sniffed from its bytes and content type, or forced by `kind`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from digestd.ingest.parse_feed import is_arxiv_api, items_from_feed, parse_xml
from digestd.ingest.parse_hf import items_from_hf, looks_like_hf
from digestd.ingest.parse_jsonfeed import items_from_jsonfeed, looks_like_jsonfeed
from digestd.ingest.types import ParseResult

JSON_KINDS = ("hf_daily", "jsonfeed")


def looks_like_json(body: bytes, content_type: str) -> bool:
    """JSON by content type, or by its first significant character."""
    head = body[:64].lstrip(b"\xef\xbb\xbf\x00\xfe\xff \t\r\n")
    return "json" in content_type.lower() or head[:1] in (b"{", b"[")


def _json(body: bytes) -> tuple[Any, str | None]:
    try:
        return json.loads(body), None
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"not valid JSON ({str(exc).splitlines()[0][:120]})"


def parse_document(body: bytes, headers: Mapping[str, str], kind: str = "auto") -> ParseResult:
    """Raw items of any supported document; never raises for bad input (see `error`)."""
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    if kind in JSON_KINDS or (kind == "auto" and looks_like_json(body, content_type)):
        doc, problem = _json(body)
        if problem:
            if kind == "auto" and "json" not in content_type.lower():
                return _xml(body, headers, kind)  # a '[' or '{' that was not JSON after all
            return ParseResult(kind=kind, error=problem)
        if kind in ("auto", "hf_daily") and looks_like_hf(doc):
            return items_from_hf(doc)
        if kind in ("auto", "jsonfeed") and looks_like_jsonfeed(doc):
            return items_from_jsonfeed(doc)
        wanted = {"hf_daily": "a Hugging Face daily_papers array", "jsonfeed": "a JSON Feed"}
        expected = wanted.get(kind, "a JSON Feed or a Hugging Face daily_papers array")
        return ParseResult(kind=kind, error=f"JSON document is not {expected}")
    return _xml(body, headers, kind)


def _xml(body: bytes, headers: Mapping[str, str], kind: str) -> ParseResult:
    if not body.strip():
        return ParseResult(kind=kind, error="empty document")
    doc = parse_xml(body, headers)
    if kind == "auto":
        kind = "arxiv_api" if is_arxiv_api(doc) else "rss"
    return items_from_feed(doc, kind, body)
