"""One raw feed item → one clean entry with a canonical key (arXiv id, DOI, link, guid, hash)."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from digestd.ingest.text import (
    clip_words,
    html_to_text,
    sanitize_html,
    text_to_html,
    tidy_text,
    title_text,
)
from digestd.ingest.types import NormalizedEntry, RawItem

_ID = r"(\d{4}\.\d{4,5}|[a-z][a-z-]+(?:\.[A-Z]{2})?/\d{7})(?:v(\d+))?"
# Places that carry an arXiv identifier. Third-party mirrors of arXiv listings
# (huggingface.co/papers, tldr.takara.ai/p) use the bare id in their paths.
_ARXIV_IN_URL = re.compile(
    r"(?:arxiv\.org/(?:abs|pdf|html)/|(?:huggingface|hf)\.co/papers/|tldr\.takara\.ai/p/)"
    + _ID
    + r"(?![\w.])",
    re.IGNORECASE,
)
_ARXIV_OAI = re.compile(r"^oai:arxiv\.org:" + _ID + r"$", re.IGNORECASE)
_ARXIV_BARE = re.compile(r"^" + _ID + r"$")
_ARXIV_PREFIX = re.compile(r"^\s*arXiv:" + _ID)
# Legacy RDF titles: "Title. (arXiv:1805.06430v2 [nucl-th] UPDATED)".
_LEGACY_TITLE_SUFFIX = re.compile(r"\s*\(arXiv:" + _ID + r"(?:\s*\[([\w.-]+)\])?[^)]*\)\s*$")
# Current arXiv RSS descriptions: "arXiv:2404.12345v1 Announce Type: new \nAbstract: …".
_ANNOUNCE_PREFIX = re.compile(
    r"^\s*(?:<p>\s*)?arXiv:\S+\s+Announce Type:\s*[\w-]+\s*Abstract:\s*", re.IGNORECASE
)
_DOI = re.compile(r"\b(10\.\d{4,9}/[^\s\"<>]+)", re.IGNORECASE)
_CODE_URL = re.compile(
    r"https?://(?:www\.)?(?:github\.com|gitlab\.com|huggingface\.co)/"
    r"(?:(?:spaces|datasets)/)?[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+",
)
_NOT_CODE = re.compile(r"huggingface\.co/(?:papers|docs|blog|posts|collections)/", re.IGNORECASE)
_HREF = re.compile(r"""href\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
MAX_KEY = 500
MAX_URL = 2048
TITLE_FROM_TEXT = 120
# Feeds are untrusted: a paper's title and abstract are bounded at ingest (two 4 MB titles
# once made the home page 8 MB). Real ones are far shorter: arXiv allows 1,920 characters
# of abstract. Longer text is cut after a whole word, ending in "…" (README).
TITLE_MAX = 300
SUMMARY_MAX = 5000
# Raw markup read at most (a multiple of the caps, for markup): bounds the parsing work.
RAW_FACTOR = 20


class Rejected(ValueError):
    """An item that cannot become an entry; the message says why, in a few words."""


def arxiv_id(item: RawItem) -> tuple[str | None, int | None]:
    """The arXiv id (without version) and version of an item, from ids, links or text."""
    candidates: list[re.Match[str] | None] = []
    if item.arxiv_id:
        candidates.append(_ARXIV_BARE.match(item.arxiv_id.strip()))
        candidates.append(_ARXIV_IN_URL.search(item.arxiv_id))
    candidates.append(_ARXIV_OAI.match(item.guid.strip()))
    for url in (item.guid, item.link, *item.links):
        candidates.append(_ARXIV_IN_URL.search(url))
    candidates.append(_ARXIV_PREFIX.match(item.summary))
    candidates.append(_LEGACY_TITLE_SUFFIX.search(item.title))
    found: str | None = None
    version: int | None = None
    for match in candidates:
        if match is None:
            continue
        if found is None:
            found = match.group(1)
        if match.group(1) == found and match.group(2) and version is None:
            version = int(match.group(2))
    return found, version


def doi_of(item: RawItem) -> str | None:
    """A DOI from the item's DOI field or a doi.org link, lower-cased."""
    for text in (item.doi or "", *(u for u in (item.link, *item.links) if "doi.org/" in u)):
        match = _DOI.search(text)
        if match:
            return match.group(1).rstrip(".,;)").lower()
    return None


def http_url(url: str | None) -> str | None:
    """The URL if it is an absolute http(s) URL of sane length, else None."""
    if not url:
        return None
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > MAX_URL:
        return None
    if any(c in url for c in "\r\n\t <>\"'"):
        return None
    return url


def find_code_url(*texts: str) -> str | None:
    """The first GitHub / GitLab / Hugging Face repository named in the texts."""
    for text in texts:
        for match in _CODE_URL.finditer(text):
            url = match.group(0).rstrip(".,;:)")
            if url.endswith(".git"):
                url = url[:-4]
            if not _NOT_CODE.search(url):
                return url
    return None


def _key(prefix: str, value: str) -> str:
    key = f"{prefix}:{value}"
    if len(key) > MAX_KEY:
        key = f"{prefix}#sha256:{hashlib.sha256(value.encode()).hexdigest()}"
    return key


def _authors(item: RawItem, split: bool) -> list[str]:
    names: list[str] = []
    for raw in item.authors:
        text = title_text(raw, is_html="<" in raw or "&" in raw)
        parts = text.split(",") if split else [text]
        names.extend(p.strip() for p in parts)
    seen: set[str] = set()
    out = []
    for name in names:
        if name and name not in seen:
            seen.add(name)
            out.append(name)
    return out


def _terms(values: list[str], limit: int = 100) -> list[str]:
    out: list[str] = []
    for value in values:
        term = title_text(value or "", is_html=False)[:limit]
        if term and term not in out:
            out.append(term)
    return out


def normalize(item: RawItem, now: datetime) -> NormalizedEntry:
    """A clean entry from a raw item, or Rejected with the reason it cannot be one."""
    aid, version = arxiv_id(item)
    doi = doi_of(item)

    title = title_text(item.title[: TITLE_MAX * RAW_FACTOR], is_html=item.title_is_html)
    categories = list(item.categories)
    legacy = _LEGACY_TITLE_SUFFIX.search(title) if aid else None
    if legacy:
        title = title[: legacy.start()].strip()
        if legacy.group(3):
            categories.insert(0, legacy.group(3))
    title = clip_words(title, TITLE_MAX)

    raw_summary = _ANNOUNCE_PREFIX.sub("", item.summary[: SUMMARY_MAX * RAW_FACTOR], count=1)
    # Markup-free "HTML" (arXiv's descriptions) skips the HTML parsers: same result, faster.
    if item.summary_is_html and ("<" in raw_summary or "&" in raw_summary):
        summary = html_to_text(raw_summary)
        summary_html = sanitize_html(raw_summary)
    else:
        summary = tidy_text(raw_summary)
        summary_html = text_to_html(summary)
    if len(summary) > SUMMARY_MAX:
        # Cut text, and HTML made from it: cutting markup could leave it unbalanced.
        summary = clip_words(summary, SUMMARY_MAX)
        summary_html = text_to_html(summary)

    if not title:
        if not summary:
            raise Rejected("item has neither a title nor any text")
        title = clip_words(summary.split("\n", 1)[0], TITLE_FROM_TEXT)

    link = http_url(item.link) or next((u for u in map(http_url, item.links) if u), None)
    pdf_url: str | None
    if aid:
        url = f"https://arxiv.org/abs/{aid}"
        pdf_url = f"https://arxiv.org/pdf/{aid}"
    else:
        url = link or ""
        pdf_url = http_url(item.pdf_url)

    guid = (item.guid or link or "").strip()
    if aid:
        key = _key("arxiv", aid)
    elif doi:
        key = _key("doi", doi)
    elif link:
        key = _key("url", link)
    elif guid:
        key = _key("guid", guid)
    else:
        digest = hashlib.sha256(f"{title}\n{summary}".encode()).hexdigest()
        key = f"hash:{digest}"
    if not guid:
        guid = key
    if len(guid) > 1000:
        guid = "sha256:" + hashlib.sha256(guid.encode()).hexdigest()

    published = item.published or now
    if published > now + timedelta(days=1):  # a clock error upstream must not pin it on top
        published = now
    listed = item.listed if item.listed is not None and item.listed <= now else None

    code_url = http_url(item.code_url) or find_code_url(
        summary, " ".join(_HREF.findall(summary_html))
    )
    split_authors = item.authors_joined or (aid is not None and len(item.authors) == 1)
    return NormalizedEntry(
        guid=guid,
        canonical_key=key,
        version=version,
        title=title,
        url=url,
        pdf_url=pdf_url,
        code_url=code_url,
        authors=_authors(item, split_authors),
        summary=summary,
        summary_html=summary_html,
        categories=_terms(categories),
        keywords=_terms(item.keywords),
        published_at=published,
        upvotes=max(0, item.upvotes) if item.upvotes is not None else None,
        comments=max(0, item.comments) if item.comments is not None else None,
        announce_type=item.announce_type,
        listed_at=listed,
    )
