"""What a selection depends on and what it answers: a profile, a pick, a subscriber's taste.

A `Profile` is everything that decides a digest for subscribers without votes (topics,
categories, size, window): equal profiles share one selection and one render. A `Taste`
(votes, liked papers) makes a selection one subscriber's own. A `Pick` is one chosen paper
with its score, its parts and its reasons.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Protocol

from digestd.core.models import Entry
from digestd.ranking import learning
from digestd.ranking.textsearch import fold
from digestd.subscribers.votes import VoteRow


@dataclass(frozen=True)
class Profile:
    """What a digest depends on; subscribers with equal profiles share selection and render."""

    topics: str
    categories: tuple[str, ...]
    max_items: int
    window_start: datetime
    window_end: datetime
    # Authors the reader follows (their papers lead) and mutes (never picked), as written.
    follows: tuple[str, ...] = ()
    muted_authors: tuple[str, ...] = ()

    @cached_property
    def key(self) -> str:
        """A stable hash of everything that decides the selection."""
        parts: list[object] = [
            " ".join(self.topics.split()),
            sorted({fold(c.strip()) for c in self.categories if c.strip()}),
            self.max_items,
            self.window_start.isoformat(),
            self.window_end.isoformat(),
        ]
        if self.follows or self.muted_authors:
            parts += [list(self.follows), list(self.muted_authors)]
        raw = json.dumps(parts, ensure_ascii=True)
        return hashlib.sha256(raw.encode()).hexdigest()[:24]

    @classmethod
    def for_subscriber(
        cls, sub: Preferring, window_start: datetime, window_end: datetime
    ) -> Profile:
        """The profile of one subscriber's preferences for one window (normalized)."""
        topics = sub.topics if isinstance(sub.topics, str) else " ".join(sub.topics or [])
        cats = tuple(sorted({c.strip() for c in (sub.categories or []) if c and c.strip()}))
        return cls(
            topics=" ".join(topics.split()),
            categories=cats,
            max_items=max(1, int(sub.max_items or 10)),
            window_start=window_start,
            window_end=window_end,
            follows=tuple(sub.follows or ()),
            muted_authors=tuple(sub.muted_authors or ()),
        )


class Preferring(Protocol):
    """What a profile is made of: a Subscriber, or a row of the store's sending columns."""

    @property
    def topics(self) -> str: ...
    @property
    def categories(self) -> Sequence[str]: ...
    @property
    def max_items(self) -> int: ...
    @property
    def follows(self) -> Sequence[str]: ...
    @property
    def muted_authors(self) -> Sequence[str]: ...


@dataclass(frozen=True)
class Pick:
    """One chosen paper, its blended score and a short human reason."""

    entry: Entry
    score: float
    reason: str
    # The weighted parts of `score` (topic, learned, popularity, freshness), for preview.
    parts: Mapping[str, float] = field(default_factory=dict)

    @property
    def reasons(self) -> list[str]:
        """The reason's parts, one per fact ("matches: KV cache", "142 upvotes")."""
        return [part for part in self.reason.split(" · ") if part]


@dataclass(frozen=True)
class Taste:
    """A subscriber's votes and liked papers, as selection reads them (see learning.py)."""

    votes: tuple[VoteRow, ...]
    papers: learning.PaperCache
    now: datetime


def rounded(parts: Mapping[str, float]) -> dict[str, float]:
    """Score parts to four decimals (what preview shows)."""
    return {k: round(v, 4) for k, v in parts.items()}


def make_pick(entry: Entry, parts: Mapping[str, float], reason: str) -> Pick:
    """A pick whose score is the sum of its weighted parts."""
    return Pick(
        entry=entry, score=round(sum(parts.values()), 4), reason=reason, parts=rounded(parts)
    )
