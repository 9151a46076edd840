"""Use cases of a reader's own library: import it (the CLI's `--import-library`, the
preference page's upload: the same function), remove it, and the read ranking needs.

An import reads the file (`library_file`: BibTeX, RIS, CSL-JSON, or ids), matches its
papers against the database by arXiv id, DOI or link (never the network), and replaces the
reader's library with the papers that have a text: those with a title (and abstract) in
the file, whether or not digestd has them, and bare ids that matched a paper digestd has.
Unknown bare ids are reported, not stored. A bad file stores nothing (one line). The most
frequent authors of the library that the reader does not follow yet are offered.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlmodel import Session

from digestd.core.context import AppContext
from digestd.core.models import Entry
from digestd.ranking import authors
from digestd.subscribers import library_file, library_store, links, store
from digestd.subscribers.library_file import MAX_PAPERS, LibraryFileError, LibraryPaper
from digestd.subscribers.library_store import NewPaper, StoredPaper
from digestd.subscribers.lifecycle import Change
from digestd.subscribers.links import LinkPage
from digestd.subscribers.manage import ByLink, Who, actor_of, find
from digestd.subscribers.preferences import InvalidInput

IMPORTED = "subscriber.library_imported"
REMOVED = "subscriber.library_removed"

__all__ = [
    "IMPORTED",
    "MAX_PAPERS",
    "REMOVED",
    "Imported",
    "LibraryFileError",
    "StoredPaper",
    "for_subscribers",
    "import_library",
    "remove_library",
]


class BadLibrary(InvalidInput):
    """A library file that cannot be used (one line; nothing was stored)."""


@dataclass(frozen=True)
class Imported:
    """What an import did: the papers that now shape the reader's digests, the ids not
    found, and the frequent authors offered (not followed yet)."""

    email: str
    format: str
    papers: int
    in_database: int
    not_found: tuple[str, ...]
    replaced: int
    offered_authors: tuple[str, ...]
    follows: tuple[str, ...] = ()  # the authors the reader follows already
    page: LinkPage | None = None

    @property
    def summary(self) -> str:
        """One line for the reader: "42 papers from your library will shape your next
        digests; 3 ids not found"."""
        line = (
            f"{self.papers} paper{'s' if self.papers != 1 else ''} from your library will "
            "shape your next digests"
        )
        if self.not_found:
            n = len(self.not_found)
            line += f"; {n} id{'s' if n != 1 else ''} not found"
        return line


def _matches(session: Session, papers: Iterable[LibraryPaper]) -> list[Entry | None]:
    """The entry each paper is in the database, by arXiv id or DOI, else by link."""
    papers = list(papers)
    by_key = library_store.entries_by_key(session, [p.ref for p in papers if p.ref])
    by_url = library_store.entries_by_url(session, [p.url for p in papers if p.url])
    found: list[Entry | None] = []
    for p in papers:
        entry = by_key.get(p.ref) if p.ref else None
        if entry is None and p.url:
            entry = by_url.get(p.url)
        found.append(entry)
    return found


def import_library(ctx: AppContext, who: Who, data: bytes) -> Imported:
    """Replace the reader's library with the papers of this file. BadLibrary (one line,
    nothing stored) for a file that cannot be read or holds no usable paper."""
    try:
        parsed = library_file.read(data)
    except LibraryFileError as exc:
        raise BadLibrary(str(exc)) from None
    now = ctx.now()
    with store.transaction(ctx) as session:
        sub = find(session, ctx, who, now)
        assert sub.id is not None
        keep: list[NewPaper] = []
        not_found: list[str] = []
        names: list[tuple[str, ...]] = []
        in_database = 0
        for paper, entry in zip(parsed.papers, _matches(session, parsed.papers), strict=True):
            entry_id = entry.id if entry is not None else None
            in_database += entry is not None
            if paper.title:
                keep.append(NewPaper(paper.title, paper.abstract, paper.ref, entry_id))
                names.append(paper.authors or tuple(entry.authors if entry else ()))
            elif entry is not None:
                title = entry.title[: library_file.MAX_TITLE]
                abstract = entry.summary[: library_file.MAX_ABSTRACT]
                keep.append(NewPaper(title, abstract, paper.ref, entry_id))
                names.append(tuple(entry.authors or ()))
            else:
                not_found.append(paper.ref or paper.url or paper.where)
        if not keep:
            raise BadLibrary(
                f"none of the {len(not_found)} ids is a paper digestd has (ids alone are "
                "matched against the papers already fetched; export titles and abstracts "
                "as BibTeX, RIS or CSL-JSON instead)"
            )
        replaced = library_store.replace(session, sub.id, keep, now)
        detail = {
            "format": parsed.format,
            "papers": len(keep),
            "in_database": in_database,
            "not_found": len(not_found),
            "replaced": replaced,
        }
        store.record(session, sub, Change(IMPORTED, detail), actor=actor_of(ctx, who), now=now)
        followed = authors.AuthorSet(sub.follows or [])
        offered = [
            name
            for name in library_file.frequent_authors(names)
            if followed.first_match([name]) is None
        ]
        page = links.page_of(session, ctx.secret_key, sub) if _by_link(who) else None
        return Imported(
            email=sub.email,
            format=parsed.format,
            papers=len(keep),
            in_database=in_database,
            not_found=tuple(not_found),
            replaced=replaced,
            offered_authors=tuple(offered),
            follows=tuple(sub.follows or ()),
            page=page,
        )


def remove_library(ctx: AppContext, who: Who) -> tuple[int, LinkPage | None]:
    """Remove the reader's whole library; returns how many papers it had."""
    now = ctx.now()
    with store.transaction(ctx) as session:
        sub = find(session, ctx, who, now)
        assert sub.id is not None
        removed = library_store.forget(session, sub.id)
        if removed:
            change = Change(REMOVED, {"papers": removed})
            store.record(session, sub, change, actor=actor_of(ctx, who), now=now)
        page = links.page_of(session, ctx.secret_key, sub) if _by_link(who) else None
        return removed, page


def _by_link(who: Who) -> bool:
    return isinstance(who, ByLink)


def for_subscribers(
    session: Session, subscriber_ids: Iterable[int], limit: int = MAX_PAPERS
) -> dict[int, list[StoredPaper]]:
    """The library papers of many subscribers (at most `limit` each), in the caller's read
    transaction, for ranking: one query per chunk, never one per subscriber."""
    return library_store.for_subscribers(session, subscriber_ids, limit)
