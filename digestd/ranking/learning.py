"""What a subscriber's votes teach: a small Rocchio model over the stemmed BM25F terms.

Method, and why: Rocchio relevance feedback (Manning et al., *Introduction to Information
Retrieval*, ch. 9). Each voted paper becomes a tf-idf vector over the same Snowball-stemmed,
accent-folded tokens the topic search uses (`textsearch.tokenize`, title counted three times
like BM25F) and over its two-word phrases ("attent head": a phrase names a subject more
precisely than its words, `Paper.phrases`; benchmarks/eval_learning.py, tuning pool, five
seeds: 0.747 → 0.777 precision with MAX_TERMS 96); the subscriber's model is the weighted
mean of the liked vectors minus half the weighted mean of the disliked ones, cut to its
strongest `MAX_TERMS` liked and `MAX_NEGATIVE_TERMS` disliked terms. Two refinements, each
measured on the tuning pool of `benchmarks/eval_learning.py`: a liked term counts by the
share of liked papers that have it (`CONSENSUS`: what several liked papers share is the
subject, what one has alone is its own detail), and a disliked paper pushes only its
`DISLIKED_TERMS` strongest terms (its subject, not the generic words it shares with the
liked ones). A paper is then scored by the BM25F relevance of the model's terms (with
`index.LEARNED_K1`), signed by their weights (`selector.py` does that with the per-window
term statistics it already keeps). Before ranking, the liked terms are joined by the words
the window's papers use with them (`associate`, co-occurrence expansion: three liked papers
name a subject in their own words, the window knows the others; 0.791 → 0.812), and after
a first ranking by the best papers' words (`expand`, pseudo-relevance feedback; 0.777 →
0.791), then ranked again, twice (0.812 → 0.820 with dislikes at a quarter weight).

- It needs nothing beyond the term counts the selector already holds: no training step, no
  new dependency, and a handful of votes is enough (a per-subscriber SVM, as arxiv-sanity
  uses, wants many more labelled papers and a solver per subscriber per digest).
- It is explainable: the terms are words, and the liked paper sharing the most weight with
  a pick is named in its reason (`like "DuoAttention…" you liked · matches: KV cache`).
- It is bounded: at most `MAX_VOTES` votes are read (newest first), each contributes its
  `PAPER_TERMS` strongest terms, and the model keeps `MAX_TERMS` + `MAX_NEGATIVE_TERMS`
  terms and `MAX_EXEMPLARS` named papers, whatever the number of votes.
- Old votes fade: a vote's weight halves every `HALF_LIFE_DAYS` (measured with the
  injected clock); liked papers named by the subscriber ("papers I like") do not fade, they
  describe the subscriber like topics do.

Selection stays per profile for subscribers without votes; a subscriber with votes is
ranked individually against the shared window statistics (a few hundred dictionary
additions), see `select.Selector.select`.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session, col

from digestd.core.db import chunks
from digestd.core.models import Entry
from digestd.ranking.textsearch import STOPWORDS, tokenize
from digestd.subscribers.votes import VoteRow

MAX_VOTES = 200
PAPER_TERMS = 100
# Liked terms kept: 96, not 32, now that phrases share the budget with words (tuning pool,
# 5 seeds: 0.759 at 32, 0.773 at 64, 0.777 at 96; the broad `adapt` theme gains most).
MAX_TERMS = 96
MAX_NEGATIVE_TERMS = 16
# A voted paper's subject: its strongest terms. A dislike pushes these, and a reason names
# the liked paper sharing most of them with a pick (a like pulls with PAPER_TERMS terms).
DISLIKED_TERMS = 24
MAX_EXEMPLARS = 24
HALF_LIFE_DAYS = 30.0
# Rocchio's beta and gamma: disliked papers push a quarter as hard as liked ones pull. At
# 1.0 the generic words a disliked paper shares with liked ones sank the liked subject too
# (benchmarks/eval_learning.py, tuning pool: 0.76 → 0.79 precision at 0.5; five seeds,
# with the association and two feedback rounds: 0.816 at 0.5, 0.820 at 0.25).
BETA, GAMMA = 1.0, 0.25
# How much a term shared by several liked papers outweighs one only a single paper has:
# its Rocchio weight times (share of the liked weight having it) ** CONSENSUS.
CONSENSUS = 1.0
TITLE_WEIGHT = 3
# Pseudo-relevance feedback (`expand`): the papers a first ranking puts on top, and how much
# their mean vector weighs against the liked terms (tuning pool of eval_learning.py, five
# seeds: 0.777 → 0.791; 10 papers 0.790, weight 0.5 0.785).
FEEDBACK_PAPERS = 5
FEEDBACK_WEIGHT = 1.0
# How many times a voter is ranked again with the feedback papers' words (each round's
# best papers found with the previous round's terms; tuning pool, five seeds, with the
# association: 0.8115 once, 0.8157 twice).
FEEDBACK_ROUNDS = 2
# Co-occurrence expansion (`associate`): the liked terms whose associated words are added
# (0: none), and how much those words weigh against the liked terms (tuning pool of
# eval_learning.py, five seeds: 0.791 → 0.8115 with 40 terms at 0.5; 20 at 0.3 and 96
# at 0.5 lower on two seeds).
ASSOCIATION_SOURCES = 40
ASSOCIATION_WEIGHT = 0.5
# A vote weaker than this (after fading) is left out: it no longer changes anything.
MIN_WEIGHT = 0.05
IN_CHUNK = 1000


@dataclass(frozen=True)
class Paper:
    """A voted paper's text as word counts (title counted TITLE_WEIGHT times), and its
    title's and abstract's tokens for its two-word phrases."""

    entry_id: int
    title: str
    counts: Mapping[str, int]
    # Kept as tokens (references to the cached stems), the phrases counted when a window
    # first needs the paper's vector: a dict of them was ≈10 KB more a cached paper.
    tokens: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())

    def phrases(self) -> Counter[str]:
        """Two adjacent words, neither a stopword ("attent head", "softwar test"), as one
        term "a b" (stems hold no space), counted like words (title TITLE_WEIGHT times)."""
        found: Counter[str] = Counter()
        for tokens, weight in zip(self.tokens, (TITLE_WEIGHT, 1), strict=True):
            previous = ""
            for token in tokens:
                if token in STOPWORDS:
                    previous = ""
                    continue
                if previous:
                    found[f"{previous} {token}"] += weight
                previous = token
        return found


@dataclass(frozen=True)
class Exemplar:
    """A voted paper as the model keeps it, to name it in reasons."""

    entry_id: int
    title: str
    weight: float  # signed and faded
    interest: bool
    terms: Mapping[str, float]  # its strongest terms, unit-length tf-idf


@dataclass(frozen=True)
class Model:
    """One subscriber's learned taste: signed term weights and the papers behind them."""

    terms: tuple[tuple[str, float], ...]
    exemplars: tuple[Exemplar, ...]
    interests_only: bool  # described by liked papers only (no digest votes)

    @property
    def positive(self) -> bool:
        return any(w > 0 for _, w in self.terms)


class PaperCache:
    """Voted papers' term counts, loaded once per send pass (many subscribers vote on the
    same papers). Bounded (≈7 KB a paper, most of it its tokens) except for what one batch
    needs at once."""

    def __init__(self, limit: int = 4000) -> None:
        self.limit = limit
        self._papers: dict[int, Paper] = {}

    def load(self, session: Session, entry_ids: Iterable[int]) -> None:
        """Read the papers not cached yet (one query per chunk of ids). When full, papers
        this call does not need are dropped first (oldest first)."""
        wanted = set(entry_ids)
        missing = sorted(i for i in wanted if i not in self._papers)
        over = len(self._papers) + len(missing) - self.limit
        if over > 0:
            for key in [k for k in self._papers if k not in wanted][:over]:
                del self._papers[key]
        for chunk in chunks(missing, IN_CHUNK):
            rows = session.execute(
                select(col(Entry.id), col(Entry.title), col(Entry.summary)).where(
                    col(Entry.id).in_(chunk)
                )
            ).all()
            for entry_id, title, summary in rows:
                self.add(entry_id, title or "", summary or "")

    def add(self, entry_id: int, title: str, summary: str) -> Paper:
        """Cache one paper from its text."""
        paper = paper_of(entry_id, title, tuple(tokenize(title)), tuple(tokenize(summary)))
        self._papers[entry_id] = paper
        return paper

    def get(self, entry_id: int) -> Paper | None:
        return self._papers.get(entry_id)


def paper_of(
    entry_id: int, title: str, title_tokens: tuple[str, ...], summary_tokens: tuple[str, ...]
) -> Paper:
    """A paper from its tokens (`textsearch.tokenize` of its title and abstract)."""
    counts: Counter[str] = Counter()
    for token in title_tokens:
        if token not in STOPWORDS:
            counts[token] += TITLE_WEIGHT
    for token in summary_tokens:
        if token not in STOPWORDS:
            counts[token] += 1
    return Paper(entry_id, " ".join(title.split()), dict(counts), (title_tokens, summary_tokens))


def fade(vote: VoteRow, now: datetime) -> float:
    """A vote's weight now: ±1 halving every HALF_LIFE_DAYS; liked papers keep theirs."""
    if vote.interest:
        return float(vote.value)
    age_days = max((now - vote.created_at).total_seconds() / 86400.0, 0.0)
    return float(vote.value * 0.5 ** (age_days / HALF_LIFE_DAYS))


def paper_vector(paper: Paper, idf: Callable[[str], float]) -> dict[str, float]:
    """The paper's strongest PAPER_TERMS terms (words and two-word phrases), (1 + log tf) ·
    idf, unit length. Terms the current window does not contain (idf 0) cannot rank
    anything and are left out."""
    weighted = []
    for term, tf in (*paper.counts.items(), *paper.phrases().items()):
        weight = idf(term)
        if weight > 0:
            weighted.append((term, (1.0 + math.log(tf)) * weight))
    weighted.sort(key=lambda tw: (-tw[1], tw[0]))
    top = weighted[:PAPER_TERMS]
    norm = math.sqrt(sum(w * w for _, w in top)) or 1.0
    return {t: w / norm for t, w in top}


def build(
    votes: Sequence[VoteRow],
    papers: PaperCache,
    idf: Callable[[str], float],
    now: datetime,
    vectors: dict[int, dict[str, float]] | None = None,
) -> Model | None:
    """The Rocchio model of these votes (None: no vote that still counts). `vectors`
    caches paper vectors under the same `idf` (many subscribers vote on the same papers)."""
    kept: list[tuple[VoteRow, float, Paper]] = []
    for vote in votes[:MAX_VOTES]:
        paper = papers.get(vote.entry_id)
        weight = fade(vote, now)
        if paper is not None and abs(weight) >= MIN_WEIGHT:
            kept.append((vote, weight, paper))
    if not kept:
        return None
    pos_total = sum(w for _, w, _ in kept if w > 0) or 1.0
    neg_total = sum(-w for _, w, _ in kept if w < 0) or 1.0
    pulled: dict[str, float] = {}
    pushed: dict[str, float] = {}
    # The share of the liked weight whose papers have each term: what several liked papers
    # share is the subject, what one has alone is that paper's own detail.
    shared: dict[str, float] = {}
    exemplars: list[Exemplar] = []
    for vote, weight, paper in kept:
        vec = vectors.get(paper.entry_id) if vectors is not None else None
        if vec is None:
            vec = paper_vector(paper, idf)
            if vectors is not None:
                vectors[paper.entry_id] = vec
        if weight > 0:
            scale = BETA * weight / pos_total
            for term, value in vec.items():
                pulled[term] = pulled.get(term, 0.0) + scale * value
                shared[term] = shared.get(term, 0.0) + weight / pos_total
        else:
            # A dislike pushes its subject, the paper's strongest terms, not the generic
            # words it shares with everything (the vector is sorted strongest first).
            scale = GAMMA * weight / neg_total
            for term, value in _strongest(vec, DISLIKED_TERMS).items():
                pushed[term] = pushed.get(term, 0.0) + scale * value
        # Reasons compare a pick's words with a voted paper's subject: its strongest words.
        words = {t: w for t, w in vec.items() if " " not in t}
        exemplars.append(
            Exemplar(
                paper.entry_id,
                paper.title,
                weight,
                vote.interest,
                _strongest(words, DISLIKED_TERMS),
            )
        )
    combined = {t: w * shared[t] ** CONSENSUS for t, w in pulled.items()}
    for term, value in pushed.items():
        combined[term] = combined.get(term, 0.0) + value
    # The strongest MAX_TERMS liked terms and MAX_NEGATIVE_TERMS disliked ones (ties by
    # name), each with its own budget: one budget for both let a few dislikes' terms
    # crowd the likes' terms out of the model. nsmallest over plain tuples, not a sort
    # with a key function (a third of building a model).
    liked = heapq.nsmallest(MAX_TERMS, [(-w, t, w) for t, w in combined.items() if w > 1e-9])
    disliked = heapq.nsmallest(
        MAX_NEGATIVE_TERMS, [(w, t, w) for t, w in combined.items() if w < -1e-9]
    )
    terms = sorted(((t, w) for _, t, w in liked + disliked), key=lambda tw: (-abs(tw[1]), tw[0]))
    exemplars.sort(key=lambda e: -abs(e.weight))
    return Model(
        terms=tuple(terms),
        exemplars=tuple(exemplars[:MAX_EXEMPLARS]),
        interests_only=all(v.interest for v, _, _ in kept),
    )


def expand(
    terms: Sequence[tuple[str, float]], vectors: Sequence[Mapping[str, float]]
) -> tuple[tuple[str, float], ...]:
    """Pseudo-relevance feedback: the model's liked terms and the mean vector of the papers
    it ranks best now (`FEEDBACK_PAPERS`), each half of the mix (`FEEDBACK_WEIGHT`), cut to
    MAX_TERMS again; the disliked terms are kept as they are. Three likes name a subject
    in few words; the papers closest to them name it in the words the window uses."""
    added: dict[str, float] = {}
    for vec in vectors:
        for term, value in vec.items():
            added[term] = added.get(term, 0.0) + value
    return _mix(terms, added, FEEDBACK_WEIGHT)


def associate(
    terms: Sequence[tuple[str, float]], neighbors: Callable[[str], Mapping[str, float]]
) -> tuple[tuple[str, float], ...]:
    """Co-occurrence expansion: the words the window's papers use with the model's
    `ASSOCIATION_SOURCES` strongest liked terms (`neighbors`, `WindowIndex.neighbors`),
    each term's words weighted by the term, mixed in at `ASSOCIATION_WEIGHT` against the
    liked terms. A reader who liked papers on distillation and prompt tuning also wants
    the ones saying "fine-tuning" or "downstream", which the three liked papers may not."""
    liked = heapq.nlargest(ASSOCIATION_SOURCES, [(w, t) for t, w in terms if w > 0])
    added: dict[str, float] = {}
    for weight, term in liked:
        near = neighbors(term)
        total = sum(near.values()) or 1.0
        for word, value in near.items():
            added[word] = added.get(word, 0.0) + weight * value / total
    return _mix(terms, added, ASSOCIATION_WEIGHT)


def _mix(
    terms: Sequence[tuple[str, float]], added: Mapping[str, float], weight: float
) -> tuple[tuple[str, float], ...]:
    """The liked terms (as a whole, 1) and `added` (as a whole, `weight`) summed, cut to
    MAX_TERMS, back to the liked terms' scale; the disliked terms kept as they are."""
    liked = {t: w for t, w in terms if w > 0}
    total = sum(liked.values())
    added_total = sum(added.values())
    if total <= 0 or added_total <= 0:
        return tuple(terms)
    mixed = {t: w / total for t, w in liked.items()}
    for term, value in added.items():
        mixed[term] = mixed.get(term, 0.0) + weight * value / added_total
    best = heapq.nsmallest(MAX_TERMS, [(-w, t, w) for t, w in mixed.items()])
    kept = sum(w for _, _, w in best) or 1.0
    # Back to the liked terms' scale, so dislikes push as hard as before.
    return tuple((t, w * total / kept) for _, t, w in best) + tuple(
        (t, w) for t, w in terms if w < 0
    )


def _strongest(vec: Mapping[str, float], n: int) -> dict[str, float]:
    """The first `n` terms of a strongest-first vector, unit length again."""
    top = list(vec.items())[:n]
    norm = math.sqrt(sum(w * w for _, w in top)) or 1.0
    return {t: w / norm for t, w in top}


def closest_liked(model: Model, doc_terms: frozenset[str] | set[str]) -> Exemplar | None:
    """The liked paper sharing the most term weight with a document (for its reason)."""
    best, best_score = None, 0.0
    for ex in model.exemplars:
        if ex.weight <= 0:
            continue
        score = ex.weight * sum(w for t, w in ex.terms.items() if t in doc_terms)
        if score > best_score:
            best, best_score = ex, score
    return best if best_score >= 0.2 else None


def short_title(title: str, limit: int = 40) -> str:
    """A title cut at a word for a one-line reason: "DuoAttention: Efficient…"."""
    text = " ".join(title.split())
    if len(text) <= limit:
        return text
    return text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:-–— ") + "…"
