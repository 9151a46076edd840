"""The subscriber store's library papers: the only module with SQL on `library_paper`.

A reader's library (`--import-library`, the preference page's upload) is a set of papers
whose titles and abstracts describe the reader like liked papers do. Only
`digestd.subscribers` imports it (the use cases are `digestd.subscribers.library`); nothing
here commits: the use case that calls it owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlmodel import Session, col

from digestd.core.db import chunks
from digestd.core.models import Entry, LibraryPaper

IN_CHUNK = 1000


@dataclass(frozen=True)
class StoredPaper:
    """A library paper as ranking reads it (plain values, no ORM object)."""

    id: int
    entry_id: int | None
    title: str
    abstract: str
    created_at: datetime


@dataclass(frozen=True)
class NewPaper:
    """A library paper to store."""

    title: str
    abstract: str
    ref: str | None
    entry_id: int | None


def replace(session: Session, subscriber_id: int, papers: Sequence[NewPaper], now: datetime) -> int:
    """Make the subscriber's library exactly `papers` (an import replaces the last one);
    returns how many papers it had before."""
    before = count(session, subscriber_id)
    session.execute(delete(LibraryPaper).where(col(LibraryPaper.subscriber_id) == subscriber_id))
    session.add_all(
        LibraryPaper(
            subscriber_id=subscriber_id,
            entry_id=p.entry_id,
            ref=p.ref,
            title=p.title,
            abstract=p.abstract,
            created_at=now,
        )
        for p in papers
    )
    session.flush()
    return before


def count(session: Session, subscriber_id: int) -> int:
    """How many papers the subscriber's library has."""
    stmt = select(func.count()).where(col(LibraryPaper.subscriber_id) == subscriber_id)
    return int(session.execute(stmt).scalar_one())


def forget(session: Session, subscriber_id: int) -> int:
    """Erase the subscriber's library (for `forget` and "Remove my library")."""
    stmt = delete(LibraryPaper).where(col(LibraryPaper.subscriber_id) == subscriber_id)
    return int(session.execute(stmt).rowcount or 0)  # type: ignore[attr-defined]


def for_subscribers(
    session: Session, subscriber_ids: Iterable[int], limit: int
) -> dict[int, list[StoredPaper]]:
    """The library papers (at most `limit` each, in import order) of many subscribers: one
    query per chunk, never one per subscriber. Subscribers without a library are absent."""
    ids = sorted(set(subscriber_ids))
    out: dict[int, list[StoredPaper]] = {}
    for chunk in chunks(ids, IN_CHUNK):
        rows = session.execute(
            select(
                col(LibraryPaper.subscriber_id),
                col(LibraryPaper.id),
                col(LibraryPaper.entry_id),
                col(LibraryPaper.title),
                col(LibraryPaper.abstract),
                col(LibraryPaper.created_at),
            )
            .where(col(LibraryPaper.subscriber_id).in_(chunk))
            .order_by(col(LibraryPaper.subscriber_id), col(LibraryPaper.id))
        ).all()
        for sub_id, paper_id, entry_id, title, abstract, created_at in rows:
            mine = out.setdefault(sub_id, [])
            if len(mine) < limit:
                mine.append(StoredPaper(paper_id, entry_id, title, abstract, created_at))
    return out


def entries_by_key(session: Session, keys: Iterable[str]) -> dict[str, Entry]:
    """Entries by canonical key ("arxiv:2310.06825", "doi:10.1/x"), those that exist."""
    wanted = sorted(set(keys))
    out: dict[str, Entry] = {}
    for chunk in chunks(wanted, IN_CHUNK):
        for entry in session.execute(
            select(Entry).where(col(Entry.canonical_key).in_(chunk))
        ).scalars():
            out[entry.canonical_key] = entry
    return out


def entries_by_url(session: Session, urls: Iterable[str]) -> dict[str, Entry]:
    """Entries by their link (a library paper with only a URL), those that exist."""
    wanted = sorted(set(urls))
    out: dict[str, Entry] = {}
    for chunk in chunks(wanted, IN_CHUNK):
        for entry in session.execute(select(Entry).where(col(Entry.url).in_(chunk))).scalars():
            out.setdefault(entry.url, entry)
    return out
