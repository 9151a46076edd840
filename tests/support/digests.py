"""Test data for digests: the seed papers as Entry rows, subscribers, sent deliveries."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Delivery, Entry, Source, Subscriber

REPO = Path(__file__).resolve().parents[2]
SEED_FEED = REPO / "seeds" / "trending-papers.json"

# A reader the seed papers match: three KV-cache / long-context papers.
KENJI = {"topics": '"KV cache" long-context', "max_items": 3}


def load_seed_entries(
    session: Session, now: datetime, *, source_name: str = "Trending"
) -> list[Entry]:
    """The 61 seed papers as entries ingested at `now` (a stand-in for the JSON Feed ingest,
    kept to the fields selection reads so these tests do not depend on ingestion)."""
    source = Source(
        url="file://seeds/trending-papers.json", kind="jsonfeed", name=source_name, created_at=now
    )
    session.add(source)
    session.flush()
    entries = [_entry(item, now, source_id=source.id) for item in _seed_items()]
    session.add_all(entries)
    session.flush()
    return entries


def seed_entries(now: datetime) -> list[Entry]:
    """The seed papers as unsaved Entry objects with ids 1..61 (for database-free ranking)."""
    return [_entry(item, now, id=n) for n, item in enumerate(_seed_items(), start=1)]


def _seed_items() -> list[dict[str, Any]]:
    return json.loads(SEED_FEED.read_text(encoding="utf-8"))["items"]


def _entry(item: dict[str, Any], now: datetime, **fields: Any) -> Entry:
    """One seed feed item as an Entry published and ingested at `now`."""
    paper: dict[str, Any] = item.get("_paper", {})
    return Entry(
        canonical_key=item["id"],
        url=item["url"],
        title=item["title"],
        summary=item.get("content_text", ""),
        authors=[a["name"] for a in item.get("authors", [])],
        categories=list(item.get("tags", [])),
        code_url=paper.get("code_url"),
        upvotes=int(paper.get("upvotes", 0)),
        published_at=now,
        ingested_at=now,
        **fields,
    )


def seed_database(database_url: str, now: datetime, subscribers: dict[str, dict[str, Any]]) -> None:
    """A migrated database with the seed papers published two hours before `now` and the given
    active subscribers (address -> preference columns), for tests that run the real command."""
    ctx = AppContext(Settings(database_url=database_url))
    try:
        ctx.migrate()
        with session_scope(ctx.engine) as s:
            load_seed_entries(s, now - timedelta(hours=2))
            for email, prefs in subscribers.items():
                add_subscriber(s, email, now, **prefs)
    finally:
        ctx.dispose()


def add_subscriber(session: Session, email: str, now: datetime, **prefs: Any) -> Subscriber:
    """An active subscriber with the given preference columns."""
    sub = Subscriber(email=email, status="active", created_at=now, confirmed_at=now, **prefs)
    session.add(sub)
    session.flush()
    return sub


def record_sent(
    session: Session,
    sub: Subscriber,
    entries: list[Entry],
    *,
    period: str,
    window_start: datetime,
    window_end: datetime,
    status: str = "sent",
) -> Delivery:
    """A delivery as the sender records it: the window and the entries it carried, in rank order."""
    delivery = Delivery(
        subscriber_id=sub.id,  # type: ignore[arg-type]
        period=period,
        status=status,
        window_start=window_start,
        window_end=window_end,
        message_id=f"<{sub.id}.{period}@test>",
        created_at=window_end,
        sent_at=window_end if status == "sent" else None,
        entry_count=len(entries),
        entry_ids=",".join(str(e.id) for e in entries),  # deliveries' format: ids in rank order
    )
    session.add(delivery)
    session.flush()
    return delivery
