"""The public trending list: today's papers, earlier days, and the days the feeds carry.

The ranking is the one a digest without topics uses (`order.trending_key`: most upvotes,
then newest). A paper is placed by when it became news (`Entry.listed_at`: its publication,
or its first day on Hugging Face Daily Papers), never by when a source was first fetched,
so a new source's back catalogue lands on its own old days, not on today. Today is the last
day up to now (`planning.window`'s daily window); an earlier day is a UTC calendar day, so
days never overlap and a paper belongs to exactly one day of the archive and of the feeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlmodel import Session

from digestd.delivery.digests import window
from digestd.ingest.store import entries_in_window
from digestd.mail.render import paper_fields
from digestd.ranking.order import trending_key

DAY = timedelta(days=1)


def today_window(now: datetime) -> tuple[datetime, datetime]:
    """(start, end] of today's list: the window of a first daily digest sent now."""
    return window("daily", now, None)


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of `day`."""
    return datetime.combine(day, time(0), UTC)


def day_window(day: date) -> tuple[datetime, datetime]:
    """(start, end] of one archive day: the UTC calendar day."""
    start = day_start(day)
    return start, start + DAY


def feed_window(now: datetime, days: int) -> tuple[datetime, datetime]:
    """(start, end] of what the feeds carry: today so far and the `days - 1` days before."""
    return day_start(now.astimezone(UTC).date() - timedelta(days=days - 1)), now


def ranked(rows: Sequence[Any], limit: int, offset: int = 0) -> list[dict[str, Any]]:
    """`limit` rows (`ingest.store.PUBLIC_COLUMNS`) from `offset` in trending order, as the
    templates and feeds show them (`render.paper_fields`, plus key, source and dates)."""
    return [
        {
            **paper_fields(row),
            "key": row.canonical_key,
            "source": row.source_name or "",
            "published_at": row.published_at,
            "ingested_at": row.ingested_at,
        }
        for row in sorted(rows, key=trending_key)[offset : offset + limit]
    ]


def papers_between(
    session: Session, start: datetime, end: datetime, limit: int, offset: int = 0
) -> list[dict[str, Any]]:
    """The trending papers of entries listed in (start, end] (`Entry.listed_at`), `limit`
    of them from `offset` (a page): one query."""
    return ranked(entries_in_window(session, start, end), limit, offset)


@dataclass(frozen=True)
class FeedDay:
    """One day of the feeds, newest first: its UTC date and its trending papers."""

    day: date
    papers: list[dict[str, Any]]


def feed_days(session: Session, now: datetime, days: int, limit: int) -> list[FeedDay]:
    """The last `days` days (today included), each ranked on its own: one query in all."""
    start, end = feed_window(now, days)
    by_day: dict[date, list[Any]] = {}
    for row in entries_in_window(session, start, end):
        by_day.setdefault(row.listed_at.astimezone(UTC).date(), []).append(row)
    return [FeedDay(d, ranked(by_day[d], limit)) for d in sorted(by_day, reverse=True)]
