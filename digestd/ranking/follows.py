"""Followed and muted authors in a selection: a followed author's paper leads the digest
whatever its score, a muted author's never enters it.

A profile's `follows` and `muted_authors` are names as the reader wrote them, matched
against a paper's authors by `authors` (accents, initials, "Last, First"). The selector
removes muted authors' papers from its candidates (an exclusion, like `-word`) and hands its
ranked picks here to put the followed ones first. A window's authors are indexed once by
last name (`AuthorIndex`), so a reader's follows cost a few dictionary look-ups, not a pass
over every author of every paper.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace

from digestd.core.models import Entry
from digestd.ranking.authors import AuthorName, parse, same_person
from digestd.ranking.order import trending_key
from digestd.ranking.profile import Pick, Profile
from digestd.ranking.reasons import followed_reason, trending_reason


class AuthorIndex:
    """The authors of loaded papers by last name: (document index, parsed name)."""

    def __init__(self, entries: Sequence[Entry]) -> None:
        self._by_last: dict[str, list[tuple[int, AuthorName]]] = {}
        self._by_key: dict[tuple[str, str], list[tuple[int, AuthorName]]] = {}
        for i, entry in enumerate(entries):
            for raw in entry.authors or ():
                name = parse(raw)
                if name.last:
                    self._by_last.setdefault(name.last, []).append((i, name))
                    self._by_key.setdefault((name.last, name.initial), []).append((i, name))

    def written_by(self, names: Iterable[str]) -> dict[int, str]:
        """{document index: the first of `names` (as written) who is one of its authors}."""
        found: dict[int, str] = {}
        for raw in names:
            wanted = parse(raw)
            if wanted.first:  # the same initial, or an author known by last name only
                pool = [
                    *self._by_key.get((wanted.last, wanted.initial), ()),
                    *self._by_key.get((wanted.last, ""), ()),
                ]
            else:
                pool = self._by_last.get(wanted.last, [])
            for i, author in pool:
                if i not in found and same_person(wanted, author):
                    found[i] = raw
        return found


def unmuted(profile: Profile, index: AuthorIndex, candidates: Iterable[int]) -> list[int]:
    """The candidates (document indexes) no muted author of the profile wrote."""
    muted = index.written_by(profile.muted_authors)
    return [i for i in candidates if i not in muted]


def followed(
    profile: Profile,
    index: AuthorIndex,
    entries: Sequence[Entry],
    allowed: Callable[[int], bool],
) -> dict[int, tuple[int, str]]:
    """{entry id: (document index, the follow as the reader wrote it)} of the allowed
    documents a followed author wrote and no muted one did (muting wins over following)."""
    muted = index.written_by(profile.muted_authors)
    return {
        entries[i].id or 0: (i, who)
        for i, who in index.written_by(profile.follows).items()
        if allowed(i) and i not in muted
    }


def lead_with(
    profile: Profile,
    ranked: list[Pick],
    found: Mapping[int, tuple[int, str]],
    entries: Sequence[Entry],
    pick_of: Callable[[int, str], Pick],
) -> list[Pick]:
    """The followed papers first (those ranked in their order, then the others in trending
    order, picked by `pick_of(index, reason)`), then the rest; `max_items` in all, so a
    reader who follows more papers than that gets the first `max_items` of them."""
    if not found:
        return ranked
    lead = [
        replace(p, reason=followed_reason(found[p.entry.id or 0][1], p.reason))
        for p in ranked
        if (p.entry.id or 0) in found
    ]
    shown = {p.entry.id or 0 for p in lead}
    others = heapq.nsmallest(
        max(profile.max_items - len(lead), 0),
        (iw for eid, iw in found.items() if eid not in shown),
        key=lambda iw: trending_key(entries[iw[0]]),
    )
    for i, who in others:
        lead.append(pick_of(i, followed_reason(who, trending_reason(entries[i]))))
    rest = [p for p in ranked if (p.entry.id or 0) not in found]
    return (lead + rest)[: profile.max_items]


def explained(
    profile: Profile,
    index: AuthorIndex,
    entries: Sequence[Entry],
    docs: Iterable[int],
    reasons: dict[int, str],
) -> dict[int, str]:
    """`reasons` by entry id with the follow reason put first for followed authors' papers
    among `docs` (what `lead_with` gave them when the digest was made)."""
    if not profile.follows:
        return reasons
    by = index.written_by(profile.follows)
    out = dict(reasons)
    for i in docs:
        if i in by:
            eid = entries[i].id or 0
            out[eid] = followed_reason(by[i], reasons.get(eid, trending_reason(entries[i])))
    return out
