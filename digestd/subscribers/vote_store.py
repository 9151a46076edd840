"""The subscriber store's votes and liked papers: the only module with SQL on `vote`.

A vote is a person's "more like this" (+1) or "less like this" (-1) on one paper, from the
link in a digest; a liked paper ("papers I like", `subscribers update --like`) is an up
vote marked `interest`, which never fades. Only `digestd.subscribers` imports it (the
public names are in `digestd.subscribers.votes`); nothing here commits: the use case that
calls it owns the transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlmodel import Session, col

from digestd.core.db import chunks
from digestd.core.models import Entry, Vote

UP, DOWN = 1, -1
DIRECTIONS = {"up": UP, "down": DOWN}
# The newest votes a subscriber's model reads (see learning.MAX_VOTES): older ones have
# faded to almost nothing anyway, and the model stays a fixed size.
READ_LIMIT = 200
MAX_INTERESTS = 50
IN_CHUNK = 1000
# "2310.06825", "2310.06825v2", "arXiv:2310.06825", an arxiv.org URL, or an entry id.
_ARXIV = re.compile(
    r"^(?:arxiv:|https?://(?:www\.)?arxiv\.org/(?:abs|pdf)/)?(\d{4}\.\d{4,5}|[a-z][a-z-]+(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?$",
    re.IGNORECASE,
)


class UnknownPaper(ValueError):
    """A paper reference that matches no entry in the database (one line)."""


@dataclass(frozen=True)
class VoteRow:
    """A vote as learning reads it (plain values, no ORM object)."""

    entry_id: int
    value: int
    interest: bool
    created_at: datetime


@dataclass(frozen=True)
class VoteView:
    """A vote as pages and the CLI show it."""

    entry_id: int
    title: str
    url: str
    key: str
    value: int
    interest: bool
    created_at: datetime

    @property
    def paper_id(self) -> str:
        """The arXiv id when there is one, else the entry id (what `--like` accepts)."""
        return self.key[6:] if self.key.startswith("arxiv:") else str(self.entry_id)


def direction_name(value: int) -> str:
    """ "up" or "down"."""
    return "up" if value > 0 else "down"


def cast(
    session: Session,
    subscriber_id: int,
    entry_id: int,
    value: int,
    *,
    now: datetime,
    interest: bool = False,
) -> bool:
    """Record a vote; True if something changed. The same vote twice changes nothing (the
    unique (subscriber, entry) key makes a concurrent double click one row: the loser's
    insert raises IntegrityError, and its caller retries and finds the row)."""
    if value not in (UP, DOWN):
        raise ValueError("a vote is +1 or -1")
    row = session.execute(
        select(Vote).where(Vote.subscriber_id == subscriber_id, Vote.entry_id == entry_id)  # type: ignore[arg-type]
    ).scalar()
    if row is None:
        session.add(
            Vote(
                subscriber_id=subscriber_id,
                entry_id=entry_id,
                value=value,
                interest=interest and value == UP,
                created_at=now,
            )
        )
        session.flush()
        return True
    keep_interest = row.interest and row.value == value
    if row.value == value and (keep_interest or not interest):
        return False
    row.value = value
    row.interest = (interest or keep_interest) and value == UP
    row.created_at = now
    session.add(row)
    return True


def undo(session: Session, subscriber_id: int, entry_id: int, value: int | None = None) -> bool:
    """Remove a subscriber's vote on one paper (only if it is `value`, when given)."""
    stmt = delete(Vote).where(Vote.subscriber_id == subscriber_id, Vote.entry_id == entry_id)  # type: ignore[arg-type]
    if value is not None:
        stmt = stmt.where(Vote.value == value)  # type: ignore[arg-type]
    return bool(session.execute(stmt).rowcount)  # type: ignore[attr-defined]


def current(session: Session, subscriber_id: int, entry_id: int) -> int | None:
    """The subscriber's vote on a paper (+1, -1), or None."""
    return session.execute(
        select(col(Vote.value)).where(
            col(Vote.subscriber_id) == subscriber_id, col(Vote.entry_id) == entry_id
        )
    ).scalar()


def clear(session: Session, subscriber_id: int, *, interests: bool = False) -> int:
    """Delete a subscriber's votes (and their liked papers too with `interests`)."""
    stmt = delete(Vote).where(Vote.subscriber_id == subscriber_id)  # type: ignore[arg-type]
    if not interests:
        stmt = stmt.where(Vote.interest.is_(False))  # type: ignore[attr-defined]
    return int(session.execute(stmt).rowcount or 0)  # type: ignore[attr-defined]


def forget(session: Session, subscriber_id: int) -> int:
    """Erase every vote and liked paper of a subscriber (for `forget`)."""
    return clear(session, subscriber_id, interests=True)


def listing(session: Session, subscriber_id: int) -> list[VoteView]:
    """A subscriber's votes and liked papers with the papers' titles, newest first."""
    rows = session.execute(
        select(
            col(Vote.entry_id),
            col(Entry.title),
            col(Entry.url),
            col(Entry.canonical_key),
            col(Vote.value),
            col(Vote.interest),
            col(Vote.created_at),
        )
        .join(Entry, Entry.id == Vote.entry_id)  # type: ignore[arg-type]
        .where(Vote.subscriber_id == subscriber_id)  # type: ignore[arg-type]
        .order_by(Vote.created_at.desc(), Vote.id.desc())  # type: ignore[attr-defined,union-attr]
    ).all()
    return [VoteView(*row) for row in rows]


def for_subscribers(session: Session, subscriber_ids: Iterable[int]) -> dict[int, list[VoteRow]]:
    """The newest votes (at most READ_LIMIT each) of many subscribers: one query per chunk,
    never one per subscriber. Subscribers without votes are absent."""
    ids = sorted(set(subscriber_ids))
    out: dict[int, list[VoteRow]] = {}
    for chunk in chunks(ids, IN_CHUNK):
        rows = session.execute(
            select(
                col(Vote.subscriber_id),
                col(Vote.entry_id),
                col(Vote.value),
                col(Vote.interest),
                col(Vote.created_at),
            )
            .where(Vote.subscriber_id.in_(chunk))  # type: ignore[attr-defined]
            .order_by(Vote.subscriber_id, Vote.created_at.desc())  # type: ignore[arg-type,attr-defined]
        ).all()
        for sub_id, entry_id, value, interest, created_at in rows:
            mine = out.setdefault(sub_id, [])
            if len(mine) < READ_LIMIT:
                mine.append(VoteRow(entry_id, value, bool(interest), created_at))
    return out


def find_papers(session: Session, refs: Sequence[str]) -> list[Entry]:
    """Entries for arXiv ids (2310.06825, arXiv:2310.06825v2, an arxiv.org link) or entry
    ids, in the order given; UnknownPaper names the first that is not in the database."""
    out: list[Entry] = []
    for raw in refs:
        ref = raw.strip()
        if not ref:
            continue
        entry = None
        match = _ARXIV.match(ref)
        if match:
            key = f"arxiv:{match.group(1)}"
            entry = session.execute(select(Entry).where(Entry.canonical_key == key)).scalar()  # type: ignore[arg-type]
        elif ref.isdigit():
            entry = session.get(Entry, int(ref))
        if entry is None:
            raise UnknownPaper(
                f"paper {ref!r} is not in the database (give the arXiv id of a paper "
                "digestd has seen, like 2310.06825, or its entry id)"
            )
        if entry not in out:
            out.append(entry)
    return out


def parse_refs(text: str | Sequence[str] | None) -> list[str]:
    """Paper references from `a,b c` (commas, spaces or new lines) or a list."""
    if text is None:
        return []
    items = re.split(r"[\s,]+", text) if isinstance(text, str) else list(text)
    return [i.strip() for i in items if i and i.strip()]


def interests(session: Session, subscriber_id: int) -> list[VoteView]:
    """A subscriber's liked papers ("papers I like"), oldest first."""
    return [v for v in reversed(listing(session, subscriber_id)) if v.interest]


def like(session: Session, subscriber_id: int, entries: Sequence[Entry], *, now: datetime) -> int:
    """Add papers to "papers I like"; returns how many were new. Bounded (MAX_INTERESTS)."""
    have = {v.entry_id for v in interests(session, subscriber_id)}
    new = [e for e in entries if e.id not in have]
    if len(have) + len(new) > MAX_INTERESTS:
        raise ValueError(f"at most {MAX_INTERESTS} liked papers")
    for entry in new:
        assert entry.id is not None
        cast(session, subscriber_id, entry.id, UP, now=now, interest=True)
    return len(new)


def unlike(session: Session, subscriber_id: int, entries: Sequence[Entry]) -> int:
    """Remove papers from "papers I like" (and any vote on them); returns how many."""
    ids = [e.id for e in entries if e.id is not None]
    if not ids:
        return 0
    result = session.execute(
        delete(Vote).where(Vote.subscriber_id == subscriber_id, Vote.entry_id.in_(ids))  # type: ignore[arg-type,attr-defined]
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def set_interests(
    session: Session, subscriber_id: int, entries: Sequence[Entry], *, now: datetime
) -> tuple[int, int]:
    """Make "papers I like" exactly `entries` (the preferences page field); returns how
    many were added and removed."""
    wanted = {e.id for e in entries}
    have = {v.entry_id for v in interests(session, subscriber_id)}
    if wanted == have:
        return 0, 0
    gone = sorted(have - wanted)
    if gone:
        session.execute(
            delete(Vote).where(Vote.subscriber_id == subscriber_id, Vote.entry_id.in_(gone))  # type: ignore[arg-type,attr-defined]
        )
    added = like(session, subscriber_id, [e for e in entries if e.id not in have], now=now)
    return added, len(gone)


def entry(session: Session, entry_id: int) -> Entry | None:
    """The paper a vote link names, or None."""
    return session.get(Entry, entry_id)
