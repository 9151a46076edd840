"""Entries in the database: batched upsert by canonical key, and the reading queries
(listings for the CLI; windows, validators and days for the public pages and feeds).

One paper seen in several sources (or twice in one feed) is one Entry; each sighting is an
EntrySource row (guid unique per source). A newer version updates the entry in place and is
recorded as an EntryVersion; `ingested_at` never moves, so selection (which looks at
ingested_at) does not offer a revised paper as new again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, func, insert, type_coerce
from sqlalchemy import select as core_select
from sqlalchemy.engine import Row
from sqlmodel import Session, col, select

from digestd.core.db import chunks
from digestd.core.models import Entry, EntrySource, EntryVersion, Source, UTCDateTime
from digestd.ingest.types import NormalizedEntry, StoreCounts

CHUNK = 500  # bound on IN (...) lists: SQLite and PostgreSQL both take this comfortably
DEFAULT_MAX_AGE = timedelta(days=7)  # DIGESTD_PAPER_MAX_AGE_DAYS' default


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


def listed_when(item: NormalizedEntry, now: datetime) -> datetime:
    """When a paper became news: its first day on Hugging Face, else its publication, never
    after `now` (when it is first seen)."""
    return min(item.listed_at or item.published_at, now)


def _new_entry(
    item: NormalizedEntry, source_id: int, now: datetime, max_age: timedelta
) -> dict[str, Any]:
    # Plain rows for a Core INSERT: building thousands of ORM objects costs more than the SQL.
    listed = listed_when(item, now)
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
        listed_at=listed,
        # Trending means new: a paper first seen long after it was published is a back
        # catalogue (a newly added source's), shown on its own day, never mailed as new.
        recent=listed >= now - max_age,
    )


def _merge(
    entry: Entry, item: NormalizedEntry, now: datetime, max_age: timedelta
) -> tuple[bool, bool]:
    """Fold a new sighting into a stored entry; (changed, new_version)."""
    changed = False
    # An old paper (a back catalogue) that Hugging Face lists today is news today: the
    # public pages move it to that day. Digests still never carry it (they take papers
    # when first seen), and a paper that was news when first seen keeps its day.
    if item.listed_at is not None and not entry.recent:
        listed = listed_when(item, now)
        if listed > entry.listed_at and listed >= now - max_age:
            entry.listed_at, changed = listed, True
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
    session: Session,
    source_id: int,
    items: Sequence[NormalizedEntry],
    now: datetime,
    max_age: timedelta = DEFAULT_MAX_AGE,
) -> StoreCounts:
    """Insert or merge a source's items with a few batched queries (no per-item round trip).
    `max_age` (DIGESTD_PAPER_MAX_AGE_DAYS): a paper listed longer before `now` is not new."""
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
            new_rows.append(_new_entry(item, source_id, now, max_age))
            counts.new += 1
            continue
        entry = found
        assert entry.id is not None  # read from the database
        ids[entry.canonical_key] = entry.id
        changed, new_version = _merge(entry, item, now, max_age)
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


def entries_by_id(session: Session, ids: Sequence[int]) -> list[Entry]:
    """These entries, in the order of `ids` (ids no longer stored are left out)."""
    found: dict[int, Entry] = {}
    for chunk in chunks(list(ids), CHUNK):
        for entry in session.exec(select(Entry).where(col(Entry.id).in_(chunk))):
            found[entry.id or 0] = entry
    return [found[i] for i in ids if i in found]


# ---- reads for the public pages and feeds (one query each, never one per entry) ----------

# What a public page or feed shows of an entry, plus what the trending order reads.
PUBLIC_COLUMNS: tuple[Any, ...] = (
    Entry.id,
    Entry.canonical_key,
    Entry.url,
    Entry.code_url,
    Entry.title,
    Entry.authors,
    Entry.summary,
    Entry.categories,
    Entry.published_at,
    Entry.ingested_at,
    Entry.listed_at,
    Entry.upvotes,
    col(Source.name).label("source_name"),
)


_WINDOW = (
    core_select(*PUBLIC_COLUMNS)
    .outerjoin(Source, col(Source.id) == col(Entry.source_id))
    .where(
        col(Entry.listed_at) > bindparam("start", type_=UTCDateTime()),
        col(Entry.listed_at) <= bindparam("end", type_=UTCDateTime()),
    )
)


def entries_in_window(session: Session, start: datetime, end: datetime) -> list[Row[Any]]:
    """Every entry listed in (start, end] (published, or first on Hugging Face: `listed_at`,
    not when a source was first fetched) with the name of the source that brought it first,
    as plain rows (attributes as in PUBLIC_COLUMNS). One query."""
    return list(session.connection().execute(_WINDOW, {"start": start, "end": end}).all())


@dataclass(frozen=True)
class WindowStamp:
    """A cheap summary of a window's entries that changes whenever what a page shows of
    them can: an entry ingested, updated (upvotes, a new version) or leaving the window."""

    count: int
    first_id: int | None
    last_id: int | None
    changed_at: datetime | None  # newest ingest or update inside the window
    left_at: datetime | None  # when the most recent entry before the window left it

    def key(self) -> tuple[object, ...]:
        return (self.count, self.first_id, self.last_id, self.changed_at, self.left_at)


def _stamp_statement() -> Any:
    # Built once: the statement's cache key is then computed once, not per page view.
    ts = UTCDateTime()
    inside = col(Entry.listed_at) > bindparam("start", type_=ts)
    changed = func.coalesce(col(Entry.updated_at), col(Entry.ingested_at))
    return core_select(
        func.count(case((inside, 1))),
        func.min(case((inside, col(Entry.id)))),
        func.max(case((inside, col(Entry.id)))),
        # MAX over a CASE loses the column type on SQLite: say it again.
        type_coerce(func.max(case((inside, changed))), ts),
        type_coerce(func.max(case((~inside, col(Entry.listed_at)))), ts),
    ).where(
        col(Entry.listed_at) > bindparam("low", type_=ts),
        col(Entry.listed_at) <= bindparam("end", type_=ts),
    )


_STAMP = _stamp_statement()


def window_stamp(
    session: Session, start: datetime, end: datetime, *, span: timedelta | None = None
) -> WindowStamp:
    """The stamp of the entries listed in (start, end]. With `span` (the window's length,
    for a window that slides with the clock) it also says when the last entry slid out.
    One aggregate query over the listed_at index."""
    params = {"start": start, "low": start - (span or timedelta(0)), "end": end}
    # Core, not ORM execution: this runs on every page view (≈0.3 ms less per request).
    count, first_id, last_id, changed_at, before = (
        session.connection().execute(_STAMP, params).one()
    )
    left_at = before + span if before is not None and span is not None else None
    return WindowStamp(int(count or 0), first_id, last_id, changed_at, left_at)


def days_with_entries(session: Session) -> list[tuple[date, int]]:
    """(UTC day, number of entries listed that day), newest day first. One query."""
    day = func.date(col(Entry.listed_at))
    rows = session.execute(select(day, func.count()).group_by(day).order_by(day.desc())).all()
    # SQLite answers date() with text, PostgreSQL with a date.
    return [(d if isinstance(d, date) else date.fromisoformat(str(d)), int(n)) for d, n in rows]


def seen_per_source(session: Session, since: datetime) -> dict[int, int]:
    """How many entries each source brought in since `since` (first seen there), by id."""
    rows = session.execute(
        core_select(col(EntrySource.source_id), func.count())
        .where(col(EntrySource.seen_at) >= since)
        .group_by(col(EntrySource.source_id))
    )
    return {int(source_id): int(n) for source_id, n in rows}
