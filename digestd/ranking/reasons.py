"""The words a pick carries: why it is in the digest ("matches: attention heads · 142 upvotes").

One place for every reason a digest, its web version and preview show, so the three always
read the same. Reasons are facts joined by " · "; `Pick.reasons` splits them again.
"""

from __future__ import annotations

from typing import Protocol

from digestd.ranking.textsearch import Clause, TopicQuery

SEPARATOR = " · "
# What a paper without any other reason is said to be (`trending_reason`).
_PLAIN = frozenset({"trending", "new this period"})


class Upvoted(Protocol):
    """What a reason reads of a paper."""

    upvotes: int


def upvotes_label(n: int) -> str:
    """ "1 upvote", "142 upvotes"."""
    return f"{n} upvote" if n == 1 else f"{n} upvotes"


def trending_reason(entry: Upvoted) -> str:
    """Why a paper is in a digest without topics."""
    upvotes = entry.upvotes or 0
    return f"trending{SEPARATOR}{upvotes_label(upvotes)}" if upvotes > 0 else "new this period"


def match_reason(query: TopicQuery, matched: list[tuple[float, Clause]], entry: Upvoted) -> str:
    """Why a paper matched the topics: the clauses it matched, strongest first."""
    reason = "matches: " + ", ".join(match_labels(query, matched))
    if (entry.upvotes or 0) > 0:
        reason += f"{SEPARATOR}{upvotes_label(entry.upvotes)}"
    return reason


def followed_reason(name: str, reason: str = "") -> str:
    """Why a followed author's paper leads the digest ("by Yann LeCun, whom you follow"),
    then what else it has ("matches: …", upvotes); "trending" and "new this period" are
    dropped: they are not why it is there."""
    rest = [part for part in reason.split(SEPARATOR) if part and part not in _PLAIN]
    return SEPARATOR.join([f"by {name}, whom you follow", *rest])


def liked_reason(title: str) -> str:
    """Why a paper is close to one the subscriber liked."""
    return f'like "{title}" you liked'


def scoring_clauses(query: TopicQuery) -> list[tuple[Clause, bool]]:
    """The query's clauses, plus each run of unquoted words as a phrase (a bonus clause):
    `mechanistic interpretability` scores higher where the words stand together."""
    out = [(c, False) for c in query.include]
    runs: dict[int, list[Clause]] = {}
    for clause in query.include:
        runs.setdefault(clause.group, []).append(clause)
    for run in runs.values():
        if len(run) > 1:
            tokens = tuple(t for c in run for t in c.tokens)
            out.append((Clause(" ".join(c.label for c in run), tokens, True, run[0].group), True))
    return out


def match_labels(
    query: TopicQuery, matched: list[tuple[float, Clause]], limit: int = 3
) -> list[str]:
    """Matched clauses, strongest first; a run of unquoted words that all matched is one."""
    hit = {c for _, c in matched}
    members: dict[int, list[Clause]] = {}
    for clause in query.include:
        members.setdefault(clause.group, []).append(clause)
    labels: list[str] = []
    for _, clause in sorted(matched, key=lambda pc: -pc[0]):
        group = members[clause.group]
        if len(group) > 1 and all(c in hit for c in group):
            label = " ".join(c.label for c in group)
        else:
            label = clause.label
        if label not in labels:
            labels.append(label)
    return labels[:limit]
