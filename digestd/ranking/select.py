"""Which papers a digest carries, within the window `digests` decided: never-twice, topic
relevance, popularity, freshness.

Work is per *profile* (topics, categories, size, window), not per subscriber: a `Selector`
loads the entries of a time range once (three queries, whatever the number of subscribers)
and ranks any number of profiles against them, remembering each profile's answer.

Relevance is BM25F (title weighted over abstract) on Snowball-stemmed, accent-folded tokens;
it is hand-written because it needs only term counts we already hold, and no well-kept small
library ranks a few hundred in-memory documents per field with phrase support.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Protocol

from sqlmodel import Session, col, select

from digestd.core.models import Entry, EntrySource, Source, Subscriber
from digestd.delivery import deliveries
from digestd.ranking import learning
from digestd.ranking.textsearch import Clause, TopicQuery, count_phrase, fold, parse_query, tokenize
from digestd.subscribers import votes

# BM25F parameters: k1 and b are the usual defaults; a title hit counts as three abstract hits.
K1 = 1.2
B = 0.75
TITLE_WEIGHT = 3.0
# Final score blend for topic profiles (relevance dominates; the rest breaks near-ties).
W_RELEVANCE, W_POPULARITY, W_FRESHNESS = 0.75, 0.15, 0.10
# With a learned model (votes, liked papers): topics still lead, the model moves papers up
# or down by up to W_LEARNED, popularity and freshness still break near-ties.
LEARNED_WEIGHTS = {"topic": 0.5, "learned": 0.35, "popularity": 0.1, "freshness": 0.05}
# No topics, a model that likes something: ranked by similarity to what was liked.
SIMILAR_WEIGHTS = {"topic": 0.0, "learned": 0.8, "popularity": 0.12, "freshness": 0.08}
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
FRESHNESS_HALF_LIFE_HOURS = 72.0


@dataclass(frozen=True)
class Profile:
    """What a digest depends on; subscribers with equal profiles share selection and render."""

    topics: str
    categories: tuple[str, ...]
    max_items: int
    window_start: datetime
    window_end: datetime

    @cached_property
    def key(self) -> str:
        """A stable hash of everything that decides the selection."""
        raw = json.dumps(
            [
                " ".join(self.topics.split()),
                sorted({fold(c.strip()) for c in self.categories if c.strip()}),
                self.max_items,
                self.window_start.isoformat(),
                self.window_end.isoformat(),
            ],
            ensure_ascii=True,
        )
        return hashlib.sha256(raw.encode()).hexdigest()[:24]

    @classmethod
    def for_subscriber(
        cls, sub: Subscriber, window_start: datetime, window_end: datetime
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
        )


@dataclass(frozen=True)
class Pick:
    """One chosen paper, its blended score and a short human reason."""

    entry: Entry
    score: float
    reason: str
    # The weighted parts of `score` (topic, learned, popularity, freshness), for preview.
    parts: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Taste:
    """A subscriber's votes and liked papers, as selection reads them (see learning.py)."""

    votes: tuple[learning.VoteRow, ...]
    papers: learning.PaperCache
    now: datetime


# ---- the index ---------------------------------------------------------------------------


@dataclass
class _Doc:
    entry: Entry
    title: list[str]
    body: list[str]
    tags: frozenset[str]  # folded categories and source names
    ingested_at: datetime
    published_at: datetime
    terms: frozenset[str] = frozenset()
    entry_id: int = 0
    upvotes: int = 0


@dataclass
class _Window:
    docs: list[int]
    members: frozenset[int]
    entry_ids: frozenset[int]
    avg_title: float
    avg_body: float
    max_log_upvotes: float
    df: dict[tuple[str, ...], int] = field(default_factory=dict)
    # term -> {doc index: BM25F part}: shared by every learned model ranked in this window
    term_parts: dict[str, dict[int, float]] = field(default_factory=dict)
    # entry id -> a voted paper's Rocchio vector under this window's IDF
    vectors: dict[int, dict[str, float]] = field(default_factory=dict)
    # per document index (all loaded documents): popularity and freshness in this window
    popularity: list[float] = field(default_factory=list)
    freshness: list[float] = field(default_factory=list)


@dataclass
class _Shared:
    """Per profile (and history), what the subscribers ranked by their votes share. Kept
    for the whole pass (one per profile with voters), so it is compact: a byte per
    document and the topic relevance (sparse). Which clauses a pick matched is worked out
    for the picks only (`Selector._matches`): kept for every candidate of every profile,
    it was ≈4 MB in benchmarks/bench_delivery.py."""

    allowed: bytes  # allowed[i] == 1: document i is a candidate for this profile
    relevance: dict[int, float]


class Selector:
    """Entries of one time range, indexed once, ranked for many profiles."""

    def __init__(
        self,
        entries: Iterable[Entry],
        source_names: Mapping[int, Iterable[str]] | None = None,
    ) -> None:
        names = source_names or {}
        self._docs: list[_Doc] = []
        self._postings: dict[str, list[int]] = {}
        for entry in entries:
            title = tokenize(entry.title or "")
            body = tokenize(entry.summary or "")
            tags = {fold(c.strip()) for c in entry.categories or [] if c and c.strip()}
            tags.update(fold(n.strip()) for n in names.get(entry.id or 0, ()) if n and n.strip())
            idx = len(self._docs)
            terms = frozenset(title) | frozenset(body)
            self._docs.append(
                _Doc(
                    entry,
                    title,
                    body,
                    frozenset(tags),
                    entry.ingested_at,
                    entry.published_at,
                    terms,
                    entry.id or 0,
                    entry.upvotes or 0,
                )
            )
            for term in terms:
                self._postings.setdefault(term, []).append(idx)
        self._windows: dict[tuple[datetime, datetime], _Window] = {}
        # clause tokens -> {doc index: (title count, body count)}
        self._hits: dict[tuple[str, ...], dict[int, tuple[int, int]]] = {}
        self._memo: dict[tuple[str, frozenset[int]], list[Pick]] = {}
        self._shared_memo: dict[tuple[str, frozenset[int]], _Shared] = {}
        self._category_docs: dict[tuple[str, ...], frozenset[int]] = {}

    @cached_property
    def _tiebreak(self) -> list[int]:
        """Each document's place in the order that breaks equal scores (most upvotes, then
        newest, then lowest id): one int to compare instead of a key built per sort."""
        docs = self._docs
        order = sorted(
            range(len(docs)),
            key=lambda i: (-docs[i].upvotes, -docs[i].published_at.timestamp(), docs[i].entry_id),
        )
        place = [0] * len(docs)
        for rank, i in enumerate(order):
            place[i] = rank
        return place

    @classmethod
    def load(cls, session: Session, start: datetime, end: datetime) -> Selector:
        """Read every entry ingested in (start, end] and the names of the sources it came from."""
        entries = list(
            session.exec(
                select(Entry)
                .where(Entry.ingested_at > start)
                .where(Entry.ingested_at <= end)
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
        ).all()
        for entry_id, source_id in seen_in:
            if source_id in source_name:
                names.setdefault(entry_id, set()).add(source_name[source_id])
        return cls(entries, names)

    def window_size(self, profile: Profile) -> int:
        """How many loaded entries fall in the profile's window."""
        return len(self._window(profile.window_start, profile.window_end).docs)

    # -- per window statistics (IDF is over the window, so a batch ranks like a single run)

    def _window(self, start: datetime, end: datetime) -> _Window:
        win = self._windows.get((start, end))
        if win is None:
            docs = [i for i, d in enumerate(self._docs) if start < d.ingested_at <= end]
            n = len(docs) or 1
            win = _Window(
                docs=docs,
                members=frozenset(docs),
                entry_ids=frozenset(self._docs[i].entry.id or 0 for i in docs),
                avg_title=sum(len(self._docs[i].title) for i in docs) / n or 1.0,
                avg_body=sum(len(self._docs[i].body) for i in docs) / n or 1.0,
                max_log_upvotes=max(
                    (math.log1p(max(self._docs[i].entry.upvotes or 0, 0)) for i in docs),
                    default=0.0,
                ),
            )
            self._windows[(start, end)] = win
        return win

    def _clause_hits(self, tokens: tuple[str, ...]) -> dict[int, tuple[int, int]]:
        hits = self._hits.get(tokens)
        if hits is None:
            hits = {}
            if len(tokens) == 1:  # one word: list.count (C) instead of positions
                term = tokens[0]
                for i in self._postings.get(term, ()):
                    doc = self._docs[i]
                    hits[i] = (doc.title.count(term), doc.body.count(term))
                self._hits[tokens] = hits
                return hits
            for i in self._postings.get(tokens[0], ()):
                doc = self._docs[i]
                t = count_phrase(doc.title, tokens, _positions(doc.title, tokens[0]))
                b = count_phrase(doc.body, tokens, _positions(doc.body, tokens[0]))
                if t or b:
                    hits[i] = (t, b)
            self._hits[tokens] = hits
        return hits

    def _df(self, win: _Window, tokens: tuple[str, ...]) -> int:
        df = win.df.get(tokens)
        if df is None:
            # One word: its postings are the documents that have it. Not through
            # _clause_hits, whose per-document counts a learned model asks for every term
            # of every voted paper (only the idf of most of them): ≈5 MB at 10k voters.
            if len(tokens) == 1:
                docs: Iterable[int] = self._postings.get(tokens[0], ())
            else:
                docs = self._clause_hits(tokens)
            df = sum(1 for i in docs if i in win.members)
            win.df[tokens] = df
        return df

    # -- ranking

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
        model = self.model(profile, taste) if taste is not None and taste.votes else None
        if model is not None:
            # Ranked for this subscriber alone (nobody shares a model): not memoized, so
            # memory does not grow with the number of voters in a pass.
            return self._rank(profile, win, relevant_exclusions, model)
        memo_key = (profile.key, relevant_exclusions)
        cached = self._memo.get(memo_key)
        if cached is None:
            cached = self._rank(profile, win, relevant_exclusions)
            self._memo[memo_key] = cached
        return list(cached)

    def model(self, profile: Profile, taste: Taste) -> learning.Model | None:
        """The subscriber's learned model under this window's term statistics."""
        win = self._window(profile.window_start, profile.window_end)
        return learning.build(
            taste.votes, taste.papers, lambda t: self._idf(win, t), taste.now, win.vectors
        )

    def _idf(self, win: _Window, term: str) -> float:
        df = self._df(win, (term,))
        if not df:
            return 0.0
        n = max(len(win.docs), 1)
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    def _term_parts(self, win: _Window, term: str) -> dict[int, float]:
        """BM25F of one term for every document of the window that has it (cached)."""
        parts = win.term_parts.get(term)
        if parts is None:
            parts = {}
            idf = self._idf(win, term)
            if idf > 0:
                for i, counts in self._clause_hits((term,)).items():
                    if i in win.members:
                        parts[i] = idf * self._saturated(win, self._docs[i], counts)
            win.term_parts[term] = parts
        return parts

    @staticmethod
    def _saturated(win: _Window, doc: _Doc, counts: tuple[int, int]) -> float:
        tf = TITLE_WEIGHT * counts[0] / (1 - B + B * len(doc.title) / win.avg_title) + counts[1] / (
            1 - B + B * len(doc.body) / win.avg_body
        )
        return tf * (K1 + 1) / (K1 + tf)

    def _rank(
        self,
        profile: Profile,
        win: _Window,
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

    def _candidates(
        self, profile: Profile, win: _Window, query: TopicQuery, excluded: frozenset[int]
    ) -> list[int]:
        """The window's documents this profile may get: categories, exclusions, history."""
        cats = tuple(sorted({fold(c.strip()) for c in profile.categories if c.strip()}))
        docs = self._docs
        candidates = win.docs
        if cats:
            matching = self._category_docs.get(cats)
            if matching is None:
                matching = frozenset(i for i, d in enumerate(docs) if _category_match(d.tags, cats))
                self._category_docs[cats] = matching
            candidates = [i for i in candidates if i in matching]
        if excluded:
            candidates = [i for i in candidates if docs[i].entry_id not in excluded]
        for clause in query.exclude:
            hits = self._clause_hits(clause.tokens)
            candidates = [i for i in candidates if i not in hits]
        return list(candidates)

    def _shared(
        self, profile: Profile, win: _Window, query: TopicQuery, excluded: frozenset[int]
    ) -> _Shared:
        """What every voter of one profile shares: candidates, topic relevance, popularity
        and freshness (memoized: voters are ranked individually, but over these)."""
        if not win.popularity:  # once per window: freshness is measured at the window's end
            win.popularity = [self._popularity(win, d) for d in self._docs]
            win.freshness = [self._freshness(profile, d) for d in self._docs]
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

    def _popularity(self, win: _Window, doc: _Doc) -> float:
        if win.max_log_upvotes <= 0:
            return 0.0
        return math.log1p(max(doc.entry.upvotes or 0, 0)) / win.max_log_upvotes

    def _freshness(self, profile: Profile, doc: _Doc) -> float:
        when = min(doc.published_at or doc.ingested_at, profile.window_end)
        age_h = max((profile.window_end - when).total_seconds() / 3600.0, 0.0)
        return 0.5 ** (age_h / FRESHNESS_HALF_LIFE_HOURS)

    def _trending(self, profile: Profile, win: _Window, candidates: list[int]) -> list[Pick]:
        ordered = sorted(candidates, key=lambda i: trending_key(self._docs[i].entry))
        picks = []
        for i in ordered[: profile.max_items]:
            doc = self._docs[i]
            parts = {
                "topic": 0.0,
                "learned": 0.0,
                "popularity": 0.8 * self._popularity(win, doc),
                "freshness": 0.2 * self._freshness(profile, doc),
            }
            picks.append(_pick(doc.entry, parts, trending_reason(doc.entry)))
        return picks

    def _topic_relevance(
        self, win: _Window, candidates: list[int], query: TopicQuery
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

    def _scored_clauses(
        self, win: _Window, query: TopicQuery
    ) -> list[tuple[Clause, bool, dict[int, tuple[int, int]], float]]:
        """Each scoring clause found in the window: is it a bonus, its hits, its idf."""
        n = max(len(win.docs), 1)
        out = []
        for clause, is_bonus in _scoring_clauses(query):
            hits = self._clause_hits(clause.tokens)
            df = self._df(win, clause.tokens)
            if df:
                out.append((clause, is_bonus, hits, math.log(1.0 + (n - df + 0.5) / (df + 0.5))))
        return out

    def _matches(
        self,
        win: _Window,
        clauses: list[tuple[Clause, bool, dict[int, tuple[int, int]], float]],
        i: int,
    ) -> list[tuple[float, Clause]]:
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
        win: _Window,
        query: TopicQuery,
        excluded: frozenset[int],
        model: learning.Model,
    ) -> list[Pick]:
        """One subscriber's ranking: topics, the learned model, popularity, freshness."""
        shared = self._shared(profile, win, query, excluded)
        relevance = shared.relevance
        voted = {e.entry_id for e in model.exemplars}
        allowed = shared.allowed
        raw: dict[int, float] = {}
        for term, weight in model.terms:
            for i, part in self._term_parts(win, term).items():
                if allowed[i]:
                    raw[i] = raw.get(i, 0.0) + weight * part
        for i in [i for i in raw if self._docs[i].entry_id in voted]:
            del raw[i]
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
        elif model.positive and best_liked > 0:
            weights = SIMILAR_WEIGHTS
            floor = MIN_RELATIVE_RELEVANCE * best_liked / scale
            eligible = [i for i in candidates if learned.get(i, 0.0) >= floor]
        else:
            weights = TRENDING_WEIGHTS
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
                    reasons.append(f'like "{learning.short_title(liked.title)}" you liked')
            if i in relevance and (matches := self._matches(win, clauses, i)):
                reasons.append("matches: " + ", ".join(_match_labels(query, matches)))
            upvotes = doc.entry.upvotes or 0
            if not reasons:
                reasons.append("trending" if upvotes > 0 else "new this period")
            if upvotes > 0:
                reasons.append(_upvotes(upvotes))
            picks.append(_pick(doc.entry, parts, " · ".join(reasons)))
        return picks

    def _relevant(
        self, profile: Profile, win: _Window, candidates: list[int], query: TopicQuery
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
                + W_FRESHNESS * self._freshness(profile, doc)
            )
            scored.append((-score, self._tiebreak[i], i, rel_norm))
        picks = []
        for neg_score, _, i, rel_norm in heapq.nsmallest(profile.max_items, scored):
            score = -neg_score
            doc = self._docs[i]
            reason = _match_reason(query, matched[i], doc.entry)
            parts = {
                "topic": W_RELEVANCE * rel_norm,
                "learned": 0.0,
                "popularity": W_POPULARITY * self._popularity(win, doc),
                "freshness": W_FRESHNESS * self._freshness(profile, doc),
            }
            picks.append(
                Pick(entry=doc.entry, score=round(score, 4), reason=reason, parts=_rounded(parts))
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
            return {self._docs[i].entry.id or 0: trending_reason(self._docs[i].entry) for i in docs}
        _, matched = self._topic_relevance(win, docs, query)
        return {
            self._docs[i].entry.id or 0: _match_reason(query, found, self._docs[i].entry)
            for i, found in matched.items()
        }


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


def trending_reason(entry: Entry) -> str:
    """Why a paper is in a digest without topics."""
    upvotes = entry.upvotes or 0
    return f"trending · {_upvotes(upvotes)}" if upvotes > 0 else "new this period"


def _match_reason(query: TopicQuery, matched: list[tuple[float, Clause]], entry: Entry) -> str:
    reason = "matches: " + ", ".join(_match_labels(query, matched))
    if (entry.upvotes or 0) > 0:
        reason += f" · {_upvotes(entry.upvotes)}"
    return reason


def reasons_for(session: Session, profile: Profile, entries: list[Entry]) -> dict[int, str]:
    """The reasons `select` gives these entries for `profile` (a sent digest's web version).
    Topic reasons need the whole window's statistics, so only then is the window loaded."""
    ids = [e.id for e in entries if e.id is not None]
    if not parse_query(profile.topics).include:
        return Selector(entries).explain(profile, ids)
    return Selector.load(session, profile.window_start, profile.window_end).explain(profile, ids)


def _rounded(parts: Mapping[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in parts.items()}


def _pick(entry: Entry, parts: Mapping[str, float], reason: str) -> Pick:
    return Pick(
        entry=entry, score=round(sum(parts.values()), 4), reason=reason, parts=_rounded(parts)
    )


def _scoring_clauses(query: TopicQuery) -> list[tuple[Clause, bool]]:
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


def _match_labels(
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


def _positions(tokens: list[str], term: str) -> list[int]:
    return [p for p, t in enumerate(tokens) if t == term]


def _category_match(tags: frozenset[str], wanted: tuple[str, ...]) -> bool:
    # "cs" matches "cs.CL"; "cs.CL" matches itself; a source name matches by its folded form.
    return any(t == w or t.startswith(w + ".") for w in wanted for t in tags)


def _upvotes(n: int) -> str:
    return f"{n} upvote" if n == 1 else f"{n} upvotes"


# ---- one subscriber (preview) ---------------------------------------------------------------


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
    per subscriber); subscribers without votes are absent and keep sharing their profile."""
    found = votes.for_subscribers(session, subscriber_ids)
    if not found:
        return {}
    papers.load(session, {v.entry_id for rows in found.values() for v in rows})
    return {sid: Taste(tuple(rows), papers, now) for sid, rows in found.items()}


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
