"""Entries in the database: batched upsert by canonical key, and the listing queries.

One paper seen in several sources (or twice in one feed) is one Entry; each sighting is an
EntrySource row (guid unique per source). A newer version updates the entry in place and is
recorded as an EntryVersion; `ingested_at` never moves, so selection (which looks at
ingested_at) does not offer a revised paper as new again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session, col, select

from digestd.db import chunks
from digestd.ingest.types import NormalizedEntry, StoreCounts
from digestd.models import Entry, EntrySource, EntryVersion

CHUNK = 500  # bound on IN (...) lists: SQLite and PostgreSQL both take this comfortably


def _merge_batch(items: Iterable[NormalizedEntry]) -> tuple[list[NormalizedEntry], int]:
    """One item per canonical key (the newest version wins); how many duplicates were folded."""
    by_key: dict[str, NormalizedEntry] = {}
    folded = 0
    for item in items:
        seen = by_key.get(item.canonical_key)
        if seen is None:
            by_key[item.canonical_key] = item
            continue
        folded += 1
        if (item.version or 0) > (seen.version or 0):
            by_key[item.canonical_key] = item
    return list(by_key.values()), folded


def _new_entry(item: NormalizedEntry, source_id: int, now: datetime) -> dict[str, Any]:
    # Plain rows for a Core INSERT: building thousands of ORM objects costs more than the SQL.
    return dict(
        source_id=source_id,
        canonical_key=item.canonical_key,
        version=item.version or 1,
        url=item.url,
        pdf_url=item.pdf_url,
        code_url=item.code_url,
        title=item.title,
        authors=item.authors,
        summary=item.summary,
        summary_html=item.summary_html,
        categories=item.categories,
        keywords=item.keywords,
        published_at=item.published_at,
        ingested_at=now,
        upvotes=item.upvotes or 0,
        comments=item.comments or 0,
        updated_at=None,
    )


def _merge(entry: Entry, item: NormalizedEntry, now: datetime) -> tuple[bool, bool]:
    """Fold a new sighting into a stored entry; (changed, new_version)."""
    changed = False
    new_version = bool(item.version and item.version > entry.version)
    if new_version:
        entry.version = item.version or entry.version
        entry.title = item.title
        if item.summary:
            entry.summary, entry.summary_html = item.summary, item.summary_html
        if item.authors:
            entry.authors = list(item.authors)
        changed = True
    # Popularity: the latest count a source reports wins; sources without counts say nothing.
    if item.upvotes is not None and item.upvotes != entry.upvotes:
        entry.upvotes, changed = item.upvotes, True
    if item.comments is not None and item.comments != entry.comments:
        entry.comments, changed = item.comments, True
    # Fill what the first source did not know (a code link, a PDF, authors, keywords).
    for name in ("code_url", "pdf_url", "url"):
        if not getattr(entry, name) and getattr(item, name):
            setattr(entry, name, getattr(item, name))
            changed = True
    for name in ("authors", "keywords"):
        if not getattr(entry, name) and getattr(item, name):
            setattr(entry, name, list(getattr(item, name)))
            changed = True
    if not entry.summary and item.summary:
        entry.summary, entry.summary_html, changed = item.summary, item.summary_html, True
    extra = [c for c in item.categories if c not in entry.categories]
    if extra:
        entry.categories = [*entry.categories, *extra]  # a new list: JSON columns track identity
        changed = True
    if changed:
        entry.updated_at = now
    return changed, new_version


def upsert_entries(
    session: Session, source_id: int, items: Sequence[NormalizedEntry], now: datetime
) -> StoreCounts:
    """Insert or merge a source's items with a few batched queries (no per-item round trip)."""
    unique, folded = _merge_batch(items)
    counts = StoreCounts(unchanged=folded)
    keys = [i.canonical_key for i in unique]
    existing: dict[str, Entry] = {}
    for key_chunk in chunks(keys, CHUNK):
        for entry in session.exec(select(Entry).where(col(Entry.canonical_key).in_(key_chunk))):
            existing[entry.canonical_key] = entry

    guids = sorted({i.guid for i in items})
    known_guids: set[str] = set()
    for guid_chunk in chunks(guids, CHUNK):
        query = select(EntrySource.guid).where(
            EntrySource.source_id == source_id, col(EntrySource.guid).in_(guid_chunk)
        )
        known_guids.update(session.exec(query))

    ids: dict[str, int] = {}
    new_rows: list[dict[str, Any]] = []
    versions: list[dict[str, Any]] = []
    for item in unique:
        found = existing.get(item.canonical_key)
        if found is None:
            new_rows.append(_new_entry(item, source_id, now))
            counts.new += 1
            continue
        entry = found
        assert entry.id is not None  # read from the database
        ids[entry.canonical_key] = entry.id
        changed, new_version = _merge(entry, item, now)
        if changed:
            counts.updated += 1
        else:
            counts.unchanged += 1
        if new_version:
            versions.append(
                {"entry_id": entry.id, "version": entry.version, "title": entry.title,
                 "recorded_at": now}
            )  # fmt: skip
    session.flush()  # the merged entries' UPDATEs
    for row_chunk in chunks(new_rows, CHUNK):
        # One batched INSERT … RETURNING per chunk (SQLAlchemy "insertmanyvalues").
        returned = session.execute(
            insert(Entry).returning(col(Entry.id), col(Entry.canonical_key)), list(row_chunk)
        )
        ids.update({key: entry_id for entry_id, key in returned})

    links = []
    for item in items:  # every guid of the batch, including folded duplicates
        if item.guid in known_guids:
            continue
        known_guids.add(item.guid)
        links.append(
            {"entry_id": ids[item.canonical_key], "source_id": source_id, "guid": item.guid,
             "seen_at": now}
        )  # fmt: skip
    for link_chunk in chunks(links, CHUNK):
        session.execute(insert(EntrySource), list(link_chunk))
    if versions:
        session.execute(insert(EntryVersion), versions)
    return counts


def list_entries(
    session: Session,
    *,
    source_id: int | None = None,
    since: datetime | None = None,
    limit: int = 50,
) -> list[Entry]:
    """Newest entries first, optionally only those seen in a source or published since a time."""
    query = select(Entry)
    if source_id is not None:
        seen = select(EntrySource.entry_id).where(EntrySource.source_id == source_id)
        query = query.where(col(Entry.id).in_(seen))
    if since is not None:
        query = query.where(col(Entry.published_at) >= since)
    query = query.order_by(col(Entry.published_at).desc(), col(Entry.id).desc()).limit(limit)
    return list(session.exec(query))
