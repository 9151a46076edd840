"""Test data for sending: fresh papers for a new day (unique keys), without ingestion."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from digestd.models import Entry

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
