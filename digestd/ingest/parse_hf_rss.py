"""Community RSS feeds of Hugging Face Daily Papers: one labelled blob per item.

Feeds built with python-feedgen from the daily_papers API put everything into the item's
description: `<p><b>Authors:</b> A, B</p><p><b>Upvotes:</b> 1</p><p><b>Summary:</b> …</p>`
(a thumbnail first). Read as plain RSS, the abstract starts with "Authors: … Upvotes: 1
Summary:", and the authors and upvotes are lost. The markup is read as HTML (nh3 and the
stdlib parser, `text.html_to_text`), then split by its paragraphs' labels; no regex runs
over the markup.
"""

from __future__ import annotations

from dataclasses import dataclass

from digestd.ingest.text import html_to_text

# Labels as the feeds write them, folded to lower case; the summary runs to the end.
AUTHORS, UPVOTES, SUMMARY = "authors:", "upvotes:", "summary:"
MAX_UPVOTES = 10_000_000


@dataclass(frozen=True)
class Labelled:
    """What a labelled description carried."""

    authors: list[str]
    upvotes: int | None
    summary: str


def split_labelled(description: str, is_html: bool) -> Labelled | None:
    """The authors, upvotes and summary of a community HF RSS description, or None when
    the description is not one (no "Summary:" paragraph, or no other label before it)."""
    if "summary:" not in description[:20_000].lower():
        return None
    text = html_to_text(description) if is_html else description
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    authors: list[str] = []
    upvotes: int | None = None
    labelled = False
    for n, paragraph in enumerate(paragraphs):
        head = paragraph[:10].lower()
        if head.startswith(AUTHORS):
            authors = [a.strip() for a in paragraph[len(AUTHORS) :].split(",") if a.strip()]
            labelled = True
        elif head.startswith(UPVOTES):
            value = paragraph[len(UPVOTES) :].strip()
            if value.isdigit() and len(value) <= 8:
                upvotes = min(int(value), MAX_UPVOTES)
            labelled = True
        elif head.startswith(SUMMARY):
            if not labelled:
                return None
            rest = [paragraph[len(SUMMARY) :].strip(), *paragraphs[n + 1 :]]
            return Labelled(authors, upvotes, "\n\n".join(p for p in rest if p))
    return None
