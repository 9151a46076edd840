"""Followed and muted authors in a selection: a followed author's paper leads the digest
whatever its score, a muted author's never enters it.

A profile's `follows` and `muted_authors` are names as the reader wrote them, matched
against a paper's authors by `authors` (accents, initials, "Last, First"). The selector
removes muted authors' papers from its candidates (an exclusion, like `-word`) and hands its
ranked picks here to put the followed ones first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace

from digestd.core.models import Entry
from digestd.ranking.authors import AuthorSet
from digestd.ranking.order import trending_key
from digestd.ranking.profile import Pick, Profile
from digestd.ranking.reasons import followed_reason, trending_reason


def unmuted(profile: Profile, entries: Sequence[Entry], candidates: Iterable[int]) -> list[int]:
    """The candidates (indexes into `entries`) no muted author of the profile wrote."""
    muted = AuthorSet(profile.muted_authors)
    if not muted:
        return list(candidates)
    return [i for i in candidates if muted.first_match(entries[i].authors) is None]


def followed(
    profile: Profile, entries: Sequence[Entry], candidates: Iterable[int]
) -> dict[int, tuple[int, str]]:
    """{entry id: (index, the follow as the reader wrote it)} of the candidates a followed
    author wrote and no muted one did (muting wins over following)."""
    follows = AuthorSet(profile.follows)
    muted = AuthorSet(profile.muted_authors)
    found: dict[int, tuple[int, str]] = {}
    if not follows:
        return found
    for i in candidates:
        entry = entries[i]
        who = follows.first_match(entry.authors)
        if who is not None and muted.first_match(entry.authors) is None:
            found[entry.id or 0] = (i, who)
    return found


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
    others = sorted(
        (iw for eid, iw in found.items() if eid not in shown),
        key=lambda iw: trending_key(entries[iw[0]]),
    )
    for i, who in others:
        lead.append(pick_of(i, followed_reason(who, trending_reason(entries[i]))))
    rest = [p for p in ranked if (p.entry.id or 0) not in found]
    return (lead + rest)[: profile.max_items]


def explained(
    profile: Profile, entries: Iterable[Entry], reasons: dict[int, str]
) -> dict[int, str]:
    """`reasons` by entry id with the follow reason put first for followed authors' papers
    (what `lead_with` gave them when the digest was made)."""
    follows = AuthorSet(profile.follows)
    if not follows:
        return reasons
    out = dict(reasons)
    for entry in entries:
        who = follows.first_match(entry.authors)
        if who is not None:
            eid = entry.id or 0
            out[eid] = followed_reason(who, reasons.get(eid, trending_reason(entry)))
    return out
