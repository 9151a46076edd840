"""Hugging Face Daily Papers (`/api/daily_papers`): a JSON array of submissions."""

from __future__ import annotations

from typing import Any

from digestd.ingest.coerce import as_dict, as_int, as_list, as_str, parse_datetime
from digestd.ingest.types import ParseResult, RawItem


def looks_like_hf(doc: Any) -> bool:
    """A JSON array whose objects carry a `paper` object or paper-like id/title fields."""
    if not isinstance(doc, list):
        return False
    objects = [x for x in doc if isinstance(x, dict)]
    if not objects and doc:
        return False
    return all("paper" in x or ("id" in x and "title" in x) for x in objects[:20])


def _item(element: dict[str, Any]) -> RawItem:
    paper = as_dict(element.get("paper")) or element
    paper_id = as_str(paper.get("id")).strip()
    authors = [as_str(a.get("name")) for a in as_list(paper.get("authors")) if isinstance(a, dict)]
    return RawItem(
        guid=paper_id,
        title=as_str(element.get("title")) or as_str(paper.get("title")),
        title_is_html=False,
        link=f"https://huggingface.co/papers/{paper_id}" if paper_id else "",
        summary=as_str(paper.get("summary")) or as_str(element.get("summary")),
        summary_is_html=False,
        authors=[a for a in authors if a],
        keywords=[as_str(k) for k in as_list(paper.get("ai_keywords"))],
        published=parse_datetime(paper.get("publishedAt"))
        or parse_datetime(element.get("publishedAt")),
        listed=parse_datetime(paper.get("submittedOnDailyAt")),
        upvotes=as_int(paper.get("upvotes")),
        comments=as_int(element.get("numComments")),
        arxiv_id=paper_id or None,
        code_url=as_str(paper.get("githubRepo")) or None,
    )


def items_from_hf(doc: list[Any]) -> ParseResult:
    """Raw items of a daily_papers array; non-objects and id-less papers are rejected."""
    result = ParseResult(kind="hf_daily")
    for n, element in enumerate(doc, 1):
        if not isinstance(element, dict):
            result.rejected.append(f"item {n}: not a JSON object")
            continue
        item = _item(element)
        if not item.guid:
            result.rejected.append(f"item {n}: paper has no id")
            continue
        result.items.append(item)
    return result
