"""Test data for sending: fresh papers for a new day (unique keys), without ingestion."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Entry
from digestd.delivery.planning import plan_due

TOPICS = ("language models", "retrieval", "interpretability", "diffusion", "robotics")


def add_papers(
    session: Session, ingested_at: datetime, n: int = 5, *, tag: str = "x"
) -> list[Entry]:
    """`n` new entries ingested at `ingested_at`, with popularity descending."""
    entries = [
        Entry(
            canonical_key=f"test:{tag}:{i}",
            url=f"https://papers.example.org/{tag}/{i}",
            title=f"Paper {tag}-{i} on {TOPICS[i % len(TOPICS)]}",
            summary=f"We study {TOPICS[i % len(TOPICS)]} at scale.",
            authors=["A. Author"],
            upvotes=100 - i,
            published_at=ingested_at,
            ingested_at=ingested_at,
        )
        for i in range(n)
    ]
    session.add_all(entries)
    session.flush()
    return entries


def plan_digests(app: AppContext, smtp_port: int, count: int) -> None:
    """Point `app` at the test SMTP server and plan one due digest for `count` subscribers."""
    from tests.support.digests import add_subscriber

    app.settings = Settings(**{**app.settings.__dict__, "smtp_port": smtp_port})
    now = app.now()
    with session_scope(app.engine) as s:
        add_papers(s, now - timedelta(hours=1))
        for i in range(count):
            add_subscriber(s, f"s{i}@example.org", now - timedelta(days=3))
    assert plan_due(app).planned == count
