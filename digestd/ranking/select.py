"""Which papers a digest carries, within the window `digests` decided: the entry point of
ranking for sending, preview and the web version of a digest.

The parts, one responsibility each: `profile` (what a selection depends on and answers),
`index` (a window's papers as a BM25F index), `selector` (ranking profiles and voters),
`reasons` (the words a pick carries), `order` (the trending order), `learning` (votes),
`textsearch` (topic queries). This module loads what one subscriber's selection needs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from digestd.core.models import Entry, Subscriber
from digestd.delivery import deliveries
from digestd.ranking import learning
from digestd.ranking.order import Rankable, trending_key
from digestd.ranking.profile import Pick, Profile, Taste
from digestd.ranking.reasons import trending_reason
from digestd.ranking.selector import Selector
from digestd.ranking.textsearch import parse_query
from digestd.subscribers import library, votes

__all__ = [
    "Pick",
    "Profile",
    "Rankable",
    "Selector",
    "SubscriberSelection",
    "Taste",
    "load_tastes",
    "reasons_for",
    "select_for_subscriber",
    "skip_reason",
    "trending_key",
    "trending_reason",
]


@dataclass(frozen=True)
class SubscriberSelection:
    """One subscriber's next digest: its profile, picks, and why it is empty when it is."""

    profile: Profile
    picks: list[Pick]
    empty_reason: str | None


def skip_reason(selector: Selector, profile: Profile) -> str:
    """Why a profile got no picks: nothing new in its window, or nothing new matching."""
    if not selector.window_size(profile):
        return "no new papers since the previous digest"
    if parse_query(profile.topics).include or profile.categories:
        return "no new paper matches the topics or categories"
    return "every new paper was already sent"


def load_tastes(
    session: Session, subscriber_ids: Iterable[int], papers: learning.PaperCache, now: datetime
) -> dict[int, Taste]:
    """The votes of many subscribers and the voted papers' text, in a few queries (not one
    per subscriber); subscribers without votes are absent and keep sharing their profile.
    A reader's library papers count as liked papers (`library_likes`)."""
    ids = list(subscriber_ids)
    found = votes.for_subscribers(session, ids)
    shelves = library.for_subscribers(session, ids)
    if not found and not shelves:
        return {}
    papers.load(
        session,
        {v.entry_id for rows in found.values() for v in rows}
        | {p.entry_id for shelf in shelves.values() for p in shelf if p.entry_id is not None},
    )
    tastes = {}
    for sid in found.keys() | shelves.keys():
        rows = found.get(sid, []) + library_likes(shelves.get(sid, []), papers)
        # The newest first, as many as a model reads (votes and library together).
        rows.sort(key=lambda v: v.created_at, reverse=True)
        tastes[sid] = Taste(tuple(_once(rows)[: votes.READ_LIMIT]), papers, now)
    return tastes


def library_likes(
    shelf: Iterable[library.StoredPaper], papers: learning.PaperCache
) -> list[votes.VoteRow]:
    """A reader's library papers as liked papers ("papers I like": they do not fade). One
    digestd has is its entry (never picked again); one it has not is its own text, cached
    under the negative of its library id (entry ids are positive)."""
    rows = []
    for paper in shelf:
        key = paper.entry_id
        if key is None or papers.get(key) is None:
            key = -paper.id
            if papers.get(key) is None:
                papers.add(key, paper.title, paper.abstract)
        rows.append(votes.VoteRow(key, votes.UP, True, paper.created_at))
    return rows


def _once(rows: list[votes.VoteRow]) -> list[votes.VoteRow]:
    """Each paper once (a voted paper that is in the library too keeps its newest row)."""
    seen: set[int] = set()
    out = []
    for row in rows:
        if row.entry_id not in seen:
            seen.add(row.entry_id)
            out.append(row)
    return out


def select_for_subscriber(
    session: Session, sub: Subscriber, start: datetime, end: datetime
) -> SubscriberSelection:
    """What one subscriber's digest for the window (start, end] carries: the same ranking
    and never-twice history and votes as a send (the window comes from `digests`)."""
    assert sub.id is not None
    profile = Profile.for_subscriber(sub, start, end)
    sent = deliveries.sent_entry_ids(session, [sub.id], since=start)[sub.id]
    selector = Selector.load(session, start, end)
    # Votes fade by the window's end (now, for a digest due now).
    taste = load_tastes(session, [sub.id], learning.PaperCache(), end).get(sub.id)
    picks = selector.select(profile, sent, taste)
    return SubscriberSelection(profile, picks, None if picks else skip_reason(selector, profile))


def reasons_for(session: Session, profile: Profile, entries: list[Entry]) -> dict[int, str]:
    """The reasons `select` gives these entries for `profile` (a sent digest's web version).
    Topic reasons need the whole window's statistics, so only then is the window loaded."""
    ids = [e.id for e in entries if e.id is not None]
    if not parse_query(profile.topics).include:
        return Selector(entries).explain(profile, ids)
    return Selector.load(session, profile.window_start, profile.window_end).explain(profile, ids)
