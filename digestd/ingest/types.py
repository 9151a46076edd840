"""Plain data passed between the ingestion steps (fetch → parse → normalize → store)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class RawItem:
    """One feed item as a parser read it, before cleaning; every field is untrusted."""

    guid: str = ""
    title: str = ""
    title_is_html: bool = True
    link: str = ""
    links: list[str] = field(default_factory=list)
    summary: str = ""
    summary_is_html: bool = True
    authors: list[str] = field(default_factory=list)
    # arXiv feeds put every author into one comma-separated string.
    authors_joined: bool = False
    categories: list[str] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    published: datetime | None = None
    # The day a paper was first listed on Hugging Face Daily Papers (submittedOnDailyAt).
    listed: datetime | None = None
    upvotes: int | None = None
    comments: int | None = None
    arxiv_id: str | None = None
    doi: str | None = None
    pdf_url: str | None = None
    code_url: str | None = None
    announce_type: str | None = None


@dataclass
class ParseResult:
    """What a document yielded: items, per-item rejections, or why the whole document failed."""

    kind: str
    items: list[RawItem] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    # Set when the document is not usable at all (garbage, API error feed, unknown format).
    error: str | None = None
    # Set when the document was damaged but parts of it were kept.
    warning: str | None = None


@dataclass
class NormalizedEntry:
    """One clean entry, ready to upsert by its canonical key."""

    guid: str
    canonical_key: str
    version: int | None  # None when the feed does not say
    title: str
    url: str
    pdf_url: str | None
    code_url: str | None
    authors: list[str]
    summary: str
    summary_html: str
    categories: list[str]
    keywords: list[str]
    published_at: datetime
    upvotes: int | None
    comments: int | None
    announce_type: str | None = None
    # When it became news, if the source says so apart from publication (HF's daily list).
    listed_at: datetime | None = None


@dataclass
class StoreCounts:
    """How an upsert went: each item counted exactly once."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0

    def as_dict(self, rejected: int = 0) -> dict[str, int]:
        return {
            "new": self.new,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": rejected,
        }


@dataclass
class FetchReport:
    """The outcome of fetching one source, as recorded in its health columns."""

    source_id: int
    url: str
    name: str
    status: str  # ok | partial | not_modified | error
    kind: str = ""
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    duration_ms: int = 0
    bytes: int = 0
    error: str | None = None  # why the fetch failed (status "error" only)
    note: str | None = None  # what was rejected or damaged (status "partial")
    reasons: list[str] = field(default_factory=list)
    next_fetch_at: datetime | None = None

    @property
    def failed(self) -> bool:
        return self.status == "error"
