"""Votes and liked papers as the rest of digestd sees them: the types, the reading of paper
references, and the one query ranking needs (every write goes through the use cases in
`digestd.subscribers.manage`; the SQL is `vote_store`)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import Session

from digestd.subscribers import vote_store
from digestd.subscribers.vote_store import (
    DIRECTIONS,
    DOWN,
    MAX_INTERESTS,
    READ_LIMIT,
    UP,
    UnknownPaper,
    VoteRow,
    VoteView,
    direction_name,
    parse_refs,
)

__all__ = [
    "DIRECTIONS",
    "DOWN",
    "MAX_INTERESTS",
    "READ_LIMIT",
    "UP",
    "UnknownPaper",
    "VoteRow",
    "VoteView",
    "direction_name",
    "for_subscribers",
    "parse_refs",
]


def for_subscribers(session: Session, subscriber_ids: Iterable[int]) -> dict[int, list[VoteRow]]:
    """The newest votes (at most READ_LIMIT each) of many subscribers, in the caller's read
    transaction: one query per chunk, never one per subscriber."""
    return vote_store.for_subscribers(session, subscriber_ids)
