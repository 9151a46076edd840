"""The papers of one time range as a small search index: tokens, postings, and the
per-window statistics BM25F, popularity and freshness need.

Relevance is BM25F (title weighted over abstract) on Snowball-stemmed, accent-folded tokens;
it is hand-written because it needs only term counts we already hold, and no well-kept small
library ranks a few hundred in-memory documents per field with phrase support. IDF is over
the window, so a batch of profiles ranks like a single run.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from digestd.core.models import Entry
from digestd.ranking import learning
from digestd.ranking.textsearch import STOPWORDS, count_phrase, fold, tokenize

# BM25F parameters: k1 and b are the usual defaults; a title hit counts as three abstract hits.
K1 = 1.2
# A learned model's terms saturate later: a paper that keeps coming back to a liked subject's
# word is more on that subject than one mentioning it once (benchmarks/eval_learning.py,
# tuning pool: precision 0.78 at 1.2, 0.82 at 3.0; topic search keeps K1).
LEARNED_K1 = 3.0
B = 0.75
TITLE_WEIGHT = 3.0
FRESHNESS_HALF_LIFE_HOURS = 72.0
# A learned term's associated words (`WindowIndex.neighbors`): how many, and in how many of
# the documents having the term a word must be found.
NEIGHBORS = 15
NEIGHBOR_MIN_DOCS = 2


@dataclass
class Doc:
    """One loaded paper as the index holds it."""

    entry: Entry
    title: list[str]
    body: list[str]
    tags: frozenset[str]  # folded categories and source names
    ingested_at: datetime
    published_at: datetime
    terms: frozenset[str] = frozenset()
    entry_id: int = 0
    upvotes: int = 0
    # The paper carries categories of its own (arXiv's); only such papers are narrowed by
    # a profile's categories (a Hugging Face or plain RSS paper has none to be judged by).
    categorized: bool = False


@dataclass
class Window:
    """The documents of one (start, end] range and their statistics."""

    docs: list[int]
    members: frozenset[int]
    entry_ids: frozenset[int]
    avg_title: float
    avg_body: float
    max_log_upvotes: float
    df: dict[tuple[str, ...], int] = field(default_factory=dict)
    # term -> {doc index: BM25F part}: shared by every learned model ranked in this window
    term_parts: dict[str, dict[int, float]] = field(default_factory=dict)
    # term -> its associated words in this window (`WindowIndex.neighbors`)
    neighbors: dict[str, dict[str, float]] = field(default_factory=dict)
    word_df: Counter[str] = field(default_factory=Counter)
    # entry id -> a voted paper's Rocchio vector under this window's IDF
    vectors: dict[int, dict[str, float]] = field(default_factory=dict)
    # per document index (all loaded documents): popularity and freshness in this window
    popularity: list[float] = field(default_factory=list)
    freshness: list[float] = field(default_factory=list)


class WindowIndex:
    """Entries of one time range, tokenized once; statistics per window, cached."""

    def __init__(
        self,
        entries: Iterable[Entry],
        source_names: Mapping[int, Iterable[str]] | None = None,
    ) -> None:
        names = source_names or {}
        self._docs: list[Doc] = []
        self._postings: dict[str, list[int]] = {}
        for entry in entries:
            title = tokenize(entry.title or "")
            body = tokenize(entry.summary or "")
            own = {fold(c.strip()) for c in entry.categories or [] if c and c.strip()}
            tags = set(own)
            tags.update(fold(n.strip()) for n in names.get(entry.id or 0, ()) if n and n.strip())
            idx = len(self._docs)
            terms = frozenset(title) | frozenset(body)
            self._docs.append(
                Doc(
                    entry,
                    title,
                    body,
                    frozenset(tags),
                    entry.ingested_at,
                    entry.published_at,
                    terms,
                    entry.id or 0,
                    entry.upvotes or 0,
                    bool(own),
                )
            )
            for term in terms:
                self._postings.setdefault(term, []).append(idx)
        self._windows: dict[tuple[datetime, datetime], Window] = {}
        # clause tokens -> {doc index: (title count, body count)}
        self._hits: dict[tuple[str, ...], dict[int, tuple[int, int]]] = {}
        self._token_lines: dict[int, tuple[str, str]] = {}

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

    def _window(self, start: datetime, end: datetime) -> Window:
        win = self._windows.get((start, end))
        if win is None:
            docs = [i for i, d in enumerate(self._docs) if start < d.ingested_at <= end]
            n = len(docs) or 1
            win = Window(
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
            if len(tokens) == 1:  # one word: list.count (C) instead of positions
                term = tokens[0]
                hits = {}
                for i in self._postings.get(term, ()):
                    doc = self._docs[i]
                    hits[i] = (doc.title.count(term), doc.body.count(term))
            else:
                hits = self._phrase_hits(tokens)
            self._hits[tokens] = hits
        return hits

    def _phrase_hits(self, tokens: tuple[str, ...]) -> dict[int, tuple[int, int]]:
        """{doc index: (title count, body count)} of a phrase of several words (not cached)."""
        hits: dict[int, tuple[int, int]] = {}
        words = frozenset(tokens)
        # Only documents having all the words are read, found through the rarest word.
        rarest = min(words, key=lambda t: len(self._postings.get(t, ())))
        # Two different words cannot overlap themselves: counted as a substring of the
        # text's tokens in one line (C), not by positions (learned models ask for the idf
        # of every two-word phrase of every voted paper).
        needle = f" {tokens[0]} {tokens[1]} " if len(words) == 2 == len(tokens) else ""
        for i in self._postings.get(rarest, ()):
            doc = self._docs[i]
            if not words <= doc.terms:
                continue
            if needle:
                title, body = self._lines(i)
                t, b = title.count(needle), body.count(needle)
            else:
                t = count_phrase(doc.title, tokens, _positions(doc.title, tokens[0]))
                b = count_phrase(doc.body, tokens, _positions(doc.body, tokens[0]))
            if t or b:
                hits[i] = (t, b)
        return hits

    def feedback_vectors(self, win: Window, docs: Iterable[int]) -> list[dict[str, float]]:
        """These documents' vectors as a voted paper's (`learning.paper_vector`, cached in
        the window by entry id like the voted papers'), for pseudo-relevance feedback."""
        out = []
        for i in docs:
            doc = self._docs[i]
            vec = win.vectors.get(doc.entry_id)
            if vec is None:
                paper = learning.paper_of(
                    doc.entry_id, doc.entry.title or "", tuple(doc.title), tuple(doc.body)
                )
                vec = learning.paper_vector(paper, lambda t: self._idf(win, t))
                win.vectors[doc.entry_id] = vec
            out.append(vec)
        return out

    def neighbors(self, win: Window, term: str) -> dict[str, float]:
        """The NEIGHBORS words most associated with a learned term (a word or a two-word
        phrase) in this window, for `learning.associate`: over the documents having the
        term, a word's share p = P(word | term) times its PMI log(p / P(word)), kept when
        the word is in NEIGHBOR_MIN_DOCS of them and more frequent there than elsewhere.
        Strongest first, cached in the window (voters share most of their terms)."""
        found = win.neighbors.get(term)
        if found is None:
            if not win.word_df:  # once per window: each word's document frequency
                for i in win.docs:
                    win.word_df.update(self._docs[i].terms)
            having = self._term_parts(win, term)
            counts: Counter[str] = Counter()
            for i in having:
                counts.update(self._docs[i].terms)
            n, m, df = max(len(win.docs), 1), len(having), win.word_df
            own = term.split(" ")
            scored = [
                (-(c / m) * math.log(c * n / (m * df[word])), word)
                for word, c in counts.items()
                # PMI > 0: more frequent with the term than in the window
                if c >= NEIGHBOR_MIN_DOCS and c * n > m * df[word]
                if word not in STOPWORDS and word not in own
            ]
            found = {w: -s for s, w in heapq.nsmallest(NEIGHBORS, scored)}
            win.neighbors[term] = found
        return found

    def _lines(self, i: int) -> tuple[str, str]:
        """Document i's title and abstract tokens as " a b c " (cached)."""
        lines = self._token_lines.get(i)
        if lines is None:
            doc = self._docs[i]
            lines = (f" {' '.join(doc.title)} ", f" {' '.join(doc.body)} ")
            self._token_lines[i] = lines
        return lines

    def _df(self, win: Window, tokens: tuple[str, ...]) -> int:
        df = win.df.get(tokens)
        if df is None:
            # One word: its postings are the documents that have it. Not through
            # _clause_hits, whose per-document counts a learned model asks for every term
            # of every voted paper (only the idf of most of them): ≈5 MB at 10k voters.
            # The same for a learned model's phrases: their hits are kept only for the
            # model's terms (`_term_parts`), not for every phrase of every voted paper.
            if len(tokens) == 1:
                docs: Iterable[int] = self._postings.get(tokens[0], ())
            else:
                cached = self._hits.get(tokens)
                docs = self._phrase_hits(tokens) if cached is None else cached
            df = sum(1 for i in docs if i in win.members)
            win.df[tokens] = df
        return df

    def _idf(self, win: Window, term: str) -> float:
        """The window's idf of a word, or of a learned two-word phrase ("attent head")."""
        df = self._df(win, tuple(term.split(" ")))
        if not df:
            return 0.0
        n = max(len(win.docs), 1)
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    def _term_parts(self, win: Window, term: str) -> dict[int, float]:
        """BM25F of one learned-model term, a word or a two-word phrase (LEARNED_K1), for
        every document of the window that has it (cached)."""
        parts = win.term_parts.get(term)
        if parts is None:
            parts = {}
            idf = self._idf(win, term)
            if idf > 0:
                for i, counts in self._clause_hits(tuple(term.split(" "))).items():
                    if i in win.members:
                        parts[i] = idf * self._saturated(win, self._docs[i], counts, LEARNED_K1)
            win.term_parts[term] = parts
        return parts

    @staticmethod
    def _saturated(win: Window, doc: Doc, counts: tuple[int, int], k1: float = K1) -> float:
        tf = TITLE_WEIGHT * counts[0] / (1 - B + B * len(doc.title) / win.avg_title) + counts[1] / (
            1 - B + B * len(doc.body) / win.avg_body
        )
        return tf * (k1 + 1) / (k1 + tf)

    def _popularity(self, win: Window, doc: Doc) -> float:
        if win.max_log_upvotes <= 0:
            return 0.0
        return math.log1p(max(doc.entry.upvotes or 0, 0)) / win.max_log_upvotes

    @staticmethod
    def _freshness(window_end: datetime, doc: Doc) -> float:
        when = min(doc.published_at or doc.ingested_at, window_end)
        age_h = max((window_end - when).total_seconds() / 3600.0, 0.0)
        return float(0.5 ** (age_h / FRESHNESS_HALF_LIFE_HOURS))


def _positions(tokens: list[str], term: str) -> list[int]:
    return [p for p, t in enumerate(tokens) if t == term]
