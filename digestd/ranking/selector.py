"""Ranking a window's papers for many profiles: never-twice, topic relevance, popularity,
freshness, and (for a subscriber with votes) the learned model.

Work is per *profile* (topics, categories, size, window), not per subscriber: a `Selector`
loads the entries of a time range once (three queries, whatever the number of subscribers)
and ranks any number of profiles against them, remembering each profile's answer.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cached_property

from sqlmodel import Session, col, select

from digestd.core.models import Entry, EntrySource, Source
from digestd.ranking import follows, learning
from digestd.ranking.index import Window, WindowIndex
from digestd.ranking.order import trending_key
from digestd.ranking.profile import Pick, Profile, Taste, make_pick, rounded
from digestd.ranking.reasons import (
    SEPARATOR,
    liked_reason,
    match_labels,
    match_reason,
    scoring_clauses,
    trending_reason,
    upvotes_label,
)
from digestd.ranking.textsearch import Clause, TopicQuery, fold, parse_query

# Final score blend for topic profiles (relevance dominates; the rest breaks near-ties).
W_RELEVANCE, W_POPULARITY, W_FRESHNESS = 0.75, 0.15, 0.10
# With a learned model (votes, liked papers): topics still lead, the model moves papers up
# or down by up to W_LEARNED, popularity and freshness still break near-ties.
LEARNED_WEIGHTS = {"topic": 0.5, "learned": 0.35, "popularity": 0.1, "freshness": 0.05}
# No topics, a model that likes something: ranked by similarity to what was liked;
# popularity and freshness only break near-ties (at 0.12 / 0.08 a popular paper on another
# subject outranked the liked subject's papers: benchmarks/eval_learning.py, tuning pool).
SIMILAR_WEIGHTS = {"topic": 0.0, "learned": 0.9, "popularity": 0.06, "freshness": 0.04}
# No topics, only "less like this": the trending list, with disliked subjects pushed down.
TRENDING_WEIGHTS = {"topic": 0.0, "learned": 0.5, "popularity": 0.8, "freshness": 0.2}
# A paper the topics do not match enters a topic digest when the model likes it this much
# (relative to the best-liked paper in the window).
MIN_LEARNED = 0.35
# The reason names a liked paper when the model's pull is at least this strong.
REASON_LEARNED = 0.2
# A match weaker than this share of the best match in the window is noise ("learning" once
# in an abstract), not a topic hit; it is left out rather than padding the digest.
MIN_RELATIVE_RELEVANCE = 0.15

ScoredClauses = list[tuple[Clause, bool, dict[int, tuple[int, int]], float]]


@dataclass
class _Shared:
    """Per profile (and history), what the subscribers ranked by their votes share. Kept
    for the whole pass (one per profile with voters), so it is compact: a byte per
    document and the topic relevance (sparse). Which clauses a pick matched is worked out
    for the picks only (`Selector._matches`): kept for every candidate of every profile,
    it was ≈4 MB in benchmarks/bench_delivery.py."""

    allowed: bytes  # allowed[i] == 1: document i is a candidate for this profile
    relevance: dict[int, float]


class Selector(WindowIndex):
    """Entries of one time range, indexed once, ranked for many profiles."""

    def __init__(
        self,
        entries: Iterable[Entry],
        source_names: Mapping[int, Iterable[str]] | None = None,
    ) -> None:
        super().__init__(entries, source_names)
        self._memo: dict[tuple[str, frozenset[int]], list[Pick]] = {}
        self._shared_memo: dict[tuple[str, frozenset[int]], _Shared] = {}
        self._category_docs: dict[tuple[str, ...], frozenset[int]] = {}

    @classmethod
    def load(cls, session: Session, start: datetime, end: datetime) -> Selector:
        """Read every entry first seen in (start, end] that was new then (`Entry.recent`: a
        new source's back catalogue never enters a digest), and the names of the sources it
        came from."""
        entries = list(
            session.exec(
                select(Entry)
                .where(Entry.ingested_at > start)
                .where(Entry.ingested_at <= end)
                .where(col(Entry.recent).is_(True))
                .order_by(col(Entry.id))
            ).all()
        )
        source_name = {
            sid: name for sid, name in session.exec(select(Source.id, Source.name)).all()
        }
        names: dict[int, set[str]] = {}
        for entry in entries:
            if entry.source_id is not None and entry.source_id in source_name:
                names.setdefault(entry.id or 0, set()).add(source_name[entry.source_id])
        seen_in = session.exec(
            select(EntrySource.entry_id, EntrySource.source_id)
            .join(Entry, col(Entry.id) == col(EntrySource.entry_id))
            .where(Entry.ingested_at > start)
            .where(Entry.ingested_at <= end)
            .where(col(Entry.recent).is_(True))
        ).all()
        for entry_id, source_id in seen_in:
            if source_id in source_name:
                names.setdefault(entry_id, set()).add(source_name[source_id])
        return cls(entries, names)

    def window_size(self, profile: Profile) -> int:
        """How many loaded entries fall in the profile's window."""
        return len(self._window(profile.window_start, profile.window_end).docs)

    def select(
        self,
        profile: Profile,
        exclude_entry_ids: frozenset[int] = frozenset(),
        taste: Taste | None = None,
    ) -> list[Pick]:
        """The ranked picks for `profile`, leaving out entries in `exclude_entry_ids`; with a
        `taste` (votes, liked papers), ranked for that one subscriber."""
        win = self._window(profile.window_start, profile.window_end)
        # Only exclusions inside the window change the answer, so subscribers whose history
        # does not touch this window share one memoized ranking.
        relevant_exclusions = (
            win.entry_ids.intersection(exclude_entry_ids) if exclude_entry_ids else frozenset()
        )
        # Followed authors are put first on top of the ranking of the same profile without
        # them, which subscribers who follow different people still share.
        ranked = replace(profile, follows=()) if profile.follows else profile
        model = self.model(profile, taste) if taste is not None and taste.votes else None
        if model is not None:
            # Ranked for this subscriber alone (nobody shares a model): not memoized, so
            # memory does not grow with the number of voters in a pass.
            picks = self._rank(ranked, win, relevant_exclusions, model)
        else:
            memo_key = (ranked.key, relevant_exclusions)
            cached = self._memo.get(memo_key)
            if cached is None:
                cached = self._rank(ranked, win, relevant_exclusions)
                self._memo[memo_key] = cached
            picks = list(cached)
        if profile.follows:
            return self._lead_with_follows(profile, win, relevant_exclusions, picks)
        return picks

    def model(self, profile: Profile, taste: Taste) -> learning.Model | None:
        """The subscriber's learned model under this window's term statistics."""
        win = self._window(profile.window_start, profile.window_end)
        return learning.build(
            taste.votes, taste.papers, lambda t: self._idf(win, t), taste.now, win.vectors
        )

    def _rank(
        self,
        profile: Profile,
        win: Window,
        excluded: frozenset[int],
        model: learning.Model | None = None,
    ) -> list[Pick]:
        query = parse_query(profile.topics)
        if model is not None:
            return self._learned(profile, win, query, excluded, model)
        candidates = self._candidates(profile, win, query, excluded)
        if not query.include:
            return self._trending(profile, win, candidates)
        return self._relevant(profile, win, candidates, query)

    def _lead_with_follows(
        self, profile: Profile, win: Window, excluded: frozenset[int], ranked: list[Pick]
    ) -> list[Pick]:
        """Followed authors' papers first, even outside the categories or topics; sent
        before, a muted author or an excluded word still keep a paper out."""
        blocked: set[int] = set()
        for clause in parse_query(profile.topics).exclude:
            blocked.update(self._clause_hits(clause.tokens))
        entries = self._entries

        def allowed(i: int) -> bool:
            return i in win.members and i not in blocked and entries[i].id not in excluded

        found = follows.followed(profile, self._authors, entries, allowed)
        return follows.lead_with(profile, ranked, found, entries, self._plain_pick(profile, win))

    @cached_property
    def _entries(self) -> list[Entry]:
        """The loaded entries, by document index."""
        return [d.entry for d in self._docs]

    @cached_property
    def _authors(self) -> follows.AuthorIndex:
        """The loaded papers' authors by last name (built when a profile names authors)."""
        return follows.AuthorIndex(self._entries)

    def _plain_pick(self, profile: Profile, win: Window) -> Callable[[int, str], Pick]:
        """A pick of document i with this reason, scored as in the trending order."""

        def pick(i: int, reason: str) -> Pick:
            doc = self._docs[i]
            parts = {
                "topic": 0.0,
                "learned": 0.0,
                "popularity": 0.8 * self._popularity(win, doc),
                "freshness": 0.2 * self._freshness(profile.window_end, doc),
            }
            return make_pick(doc.entry, parts, reason)

        return pick

    def _candidates(
        self, profile: Profile, win: Window, query: TopicQuery, excluded: frozenset[int]
    ) -> list[int]:
        """The window's documents this profile may get: categories (of the papers that have
        some), exclusions, history."""
        cats = tuple(sorted({fold(c.strip()) for c in profile.categories if c.strip()}))
        docs = self._docs
        candidates = win.docs
        if cats:
            matching = self._category_docs.get(cats)
            if matching is None:
                # Categories narrow, never exclude the uncategorized: a paper without
                # categories of its own (Hugging Face, a plain RSS feed, the seeds) is judged
                # by topics and votes alone, as on the home page.
                matching = frozenset(
                    i
                    for i, d in enumerate(docs)
                    if not d.categorized or _category_match(d.tags, cats)
                )
                self._category_docs[cats] = matching
            candidates = [i for i in candidates if i in matching]
        if excluded:
            candidates = [i for i in candidates if docs[i].entry_id not in excluded]
        for clause in query.exclude:
            hits = self._clause_hits(clause.tokens)
            candidates = [i for i in candidates if i not in hits]
        if profile.muted_authors:  # an exclusion the reader made, like `-word`
            candidates = follows.unmuted(profile, self._authors, candidates)
        return list(candidates)

    def _shared(
        self, profile: Profile, win: Window, query: TopicQuery, excluded: frozenset[int]
    ) -> _Shared:
        """What every voter of one profile shares: candidates, topic relevance, popularity
        and freshness (memoized: voters are ranked individually, but over these)."""
        if not win.popularity:  # once per window: freshness is measured at the window's end
            win.popularity = [self._popularity(win, d) for d in self._docs]
            win.freshness = [self._freshness(profile.window_end, d) for d in self._docs]
        key = (profile.key, excluded)
        shared = self._shared_memo.get(key)
        if shared is None:
            candidates = self._candidates(profile, win, query, excluded)
            relevance, _ = self._topic_relevance(win, candidates, query)
            allowed = bytearray(len(self._docs))
            for i in candidates:
                allowed[i] = 1
            shared = _Shared(bytes(allowed), relevance)
            self._shared_memo[key] = shared
        return shared

    def _trending(self, profile: Profile, win: Window, candidates: list[int]) -> list[Pick]:
        ordered = sorted(candidates, key=lambda i: trending_key(self._docs[i].entry))
        picks = []
        for i in ordered[: profile.max_items]:
            doc = self._docs[i]
            parts = {
                "topic": 0.0,
                "learned": 0.0,
                "popularity": 0.8 * self._popularity(win, doc),
                "freshness": 0.2 * self._freshness(profile.window_end, doc),
            }
            picks.append(make_pick(doc.entry, parts, trending_reason(doc.entry)))
        return picks

    def _topic_relevance(
        self, win: Window, candidates: list[int], query: TopicQuery
    ) -> tuple[dict[int, float], dict[int, list[tuple[float, Clause]]]]:
        """BM25F relevance of each candidate to the topic query, and the clauses it matched."""
        relevance: dict[int, float] = {}
        matched: dict[int, list[tuple[float, Clause]]] = {}
        for clause, is_bonus, hits, idf in self._scored_clauses(win, query):
            for i in candidates:
                counts = hits.get(i)
                if counts is None:
                    continue
                part = idf * self._saturated(win, self._docs[i], counts)
                relevance[i] = relevance.get(i, 0.0) + part
                if not is_bonus:
                    matched.setdefault(i, []).append((part, clause))
        return relevance, matched

    def _scored_clauses(self, win: Window, query: TopicQuery) -> ScoredClauses:
        """Each scoring clause found in the window: is it a bonus, its hits, its idf."""
        n = max(len(win.docs), 1)
        out = []
        for clause, is_bonus in scoring_clauses(query):
            hits = self._clause_hits(clause.tokens)
            df = self._df(win, clause.tokens)
            if df:
                out.append((clause, is_bonus, hits, math.log(1.0 + (n - df + 0.5) / (df + 0.5))))
        return out

    def _matches(self, win: Window, clauses: ScoredClauses, i: int) -> list[tuple[float, Clause]]:
        """The clauses document i matched with their parts: `_topic_relevance`'s `matched[i]`
        for one document (`clauses` from `_scored_clauses`)."""
        return [
            (idf * self._saturated(win, self._docs[i], hits[i]), clause)
            for clause, is_bonus, hits, idf in clauses
            if not is_bonus and i in hits
        ]

    def _learned(
        self,
        profile: Profile,
        win: Window,
        query: TopicQuery,
        excluded: frozenset[int],
        model: learning.Model,
    ) -> list[Pick]:
        """One subscriber's ranking: topics, the learned model, popularity, freshness."""
        shared = self._shared(profile, win, query, excluded)
        relevance = shared.relevance
        voted = {e.entry_id for e in model.exemplars}
        allowed = shared.allowed
        terms = model.terms
        if model.positive:  # liked terms with the words the window uses with them
            terms = learning.associate(terms, lambda t: self.neighbors(win, t))
        raw = self._model_scores(win, terms, allowed, voted)
        for _ in range(learning.FEEDBACK_ROUNDS if model.positive else 0):
            if not raw:
                break
            # ranked again with the best papers' words (learning.expand)
            top = heapq.nlargest(learning.FEEDBACK_PAPERS, raw, key=lambda i: (raw[i], -i))
            found = self.feedback_vectors(win, [i for i in top if raw[i] > 0])
            terms = learning.expand(terms, found)
            raw = self._model_scores(win, terms, allowed, voted)
        docs = self._docs
        candidates = [i for i in win.docs if allowed[i] and docs[i].entry_id not in voted]
        scale = max((abs(v) for v in raw.values()), default=0.0) or 1.0
        best_liked = max(raw.values(), default=0.0)
        learned = {i: v / scale for i, v in raw.items()}
        best_topic = max(relevance.values(), default=0.0) or 1.0
        if query.include:
            weights = LEARNED_WEIGHTS
            liked_floor = MIN_LEARNED * best_liked / scale
            eligible = [
                i
                for i in candidates
                if relevance.get(i, 0.0) / best_topic >= MIN_RELATIVE_RELEVANCE
                or (best_liked > 0 and learned.get(i, 0.0) >= liked_floor)
            ]
        else:
            # Learning reorders, it never cuts: without topics every candidate stays
            # eligible (only the reader's own limits removed papers: categories, -words,
            # history), liked subjects rise and disliked ones sink, so a digest carries
            # max_items whenever the window has that many.
            weights = SIMILAR_WEIGHTS if model.positive and best_liked > 0 else TRENDING_WEIGHTS
            eligible = list(candidates)
        w_topic, w_learned = weights["topic"] / best_topic, weights["learned"]
        w_pop, w_fresh = weights["popularity"], weights["freshness"]
        pop, fresh, tiebreak = win.popularity, win.freshness, self._tiebreak
        # Best first, equal scores in the tie-break order; only the top max_items sorted.
        best = heapq.nsmallest(
            profile.max_items,
            [
                (
                    -(
                        w_topic * relevance.get(i, 0.0)
                        + w_learned * learned.get(i, 0.0)
                        + w_pop * pop[i]
                        + w_fresh * fresh[i]
                    ),
                    tiebreak[i],
                    i,
                )
                for i in eligible
            ],
        )
        clauses = self._scored_clauses(win, query) if relevance else []
        picks = []
        for _, _, i in best:
            doc = self._docs[i]
            parts = {
                "topic": w_topic * relevance.get(i, 0.0),
                "learned": w_learned * learned.get(i, 0.0),
                "popularity": w_pop * pop[i],
                "freshness": w_fresh * fresh[i],
            }
            reasons = []
            if learned.get(i, 0.0) >= REASON_LEARNED:
                liked = learning.closest_liked(model, doc.terms)
                if liked is not None:
                    reasons.append(liked_reason(learning.short_title(liked.title)))
            if i in relevance and (matches := self._matches(win, clauses, i)):
                reasons.append("matches: " + ", ".join(match_labels(query, matches)))
            upvotes = doc.entry.upvotes or 0
            if not reasons:
                reasons.append("trending" if upvotes > 0 else "new this period")
            if upvotes > 0:
                reasons.append(upvotes_label(upvotes))
            picks.append(make_pick(doc.entry, parts, SEPARATOR.join(reasons)))
        return picks

    def _model_scores(
        self,
        win: Window,
        terms: Iterable[tuple[str, float]],
        allowed: bytes,
        voted: set[int],
    ) -> dict[int, float]:
        """Each allowed document's score under a learned model's signed terms."""
        raw: dict[int, float] = {}
        for term, weight in terms:
            for i, part in self._term_parts(win, term).items():
                if allowed[i]:
                    raw[i] = raw.get(i, 0.0) + weight * part
        for i in [i for i in raw if self._docs[i].entry_id in voted]:
            del raw[i]
        return raw

    def _relevant(
        self, profile: Profile, win: Window, candidates: list[int], query: TopicQuery
    ) -> list[Pick]:
        relevance, matched = self._topic_relevance(win, candidates, query)
        if not relevance:
            return []
        best = max(relevance.values())
        scored = []
        for i, rel in relevance.items():
            rel_norm = rel / best
            if rel_norm < MIN_RELATIVE_RELEVANCE:
                continue
            doc = self._docs[i]
            score = (
                W_RELEVANCE * rel_norm
                + W_POPULARITY * self._popularity(win, doc)
                + W_FRESHNESS * self._freshness(profile.window_end, doc)
            )
            scored.append((-score, self._tiebreak[i], i, rel_norm))
        picks = []
        for neg_score, _, i, rel_norm in heapq.nsmallest(profile.max_items, scored):
            score = -neg_score
            doc = self._docs[i]
            reason = match_reason(query, matched[i], doc.entry)
            parts = {
                "topic": W_RELEVANCE * rel_norm,
                "learned": 0.0,
                "popularity": W_POPULARITY * self._popularity(win, doc),
                "freshness": W_FRESHNESS * self._freshness(profile.window_end, doc),
            }
            picks.append(
                Pick(entry=doc.entry, score=round(score, 4), reason=reason, parts=rounded(parts))
            )
        return picks

    def explain(self, profile: Profile, entry_ids: Iterable[int]) -> dict[int, str]:
        """The reason `select` gives each of these entries for `profile` (the same words a
        digest carried), whether or not it would still be picked; entries outside the
        window or no longer matching the topics get none."""
        win = self._window(profile.window_start, profile.window_end)
        wanted = set(entry_ids)
        docs = [i for i in win.docs if self._docs[i].entry.id in wanted]
        query = parse_query(profile.topics)
        if not query.include:
            reasons = {
                self._docs[i].entry.id or 0: trending_reason(self._docs[i].entry) for i in docs
            }
        else:
            _, matched = self._topic_relevance(win, docs, query)
            reasons = {
                self._docs[i].entry.id or 0: match_reason(query, found, self._docs[i].entry)
                for i, found in matched.items()
            }
        return follows.explained(profile, self._authors, self._entries, docs, reasons)


def _category_match(tags: frozenset[str], wanted: tuple[str, ...]) -> bool:
    # "cs" matches "cs.CL"; "cs.CL" matches itself; a source name matches by its folded form.
    return any(t == w or t.startswith(w + ".") for w in wanted for t in tags)
