"""The trending order: one rule for digests without topics, the public page and the feeds."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class Rankable(Protocol):
    """What the trending order reads of a paper (an Entry, or a row with these columns)."""

    id: int | None
    upvotes: int
    published_at: datetime
    ingested_at: datetime


def trending_key(entry: Rankable) -> tuple[int, float, float, int]:
    """The trending order (digests without topics, the public page, the feeds): most
    upvotes first, then newest published, then newest ingested, then lowest id."""
    return (
        -(entry.upvotes or 0),
        -entry.published_at.timestamp(),
        -entry.ingested_at.timestamp(),
        entry.id or 0,
    )
