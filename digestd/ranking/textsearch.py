"""Text matching for topics: accent- and case-insensitive tokens, light stemming, topic queries.

A topic query is what a subscriber types: words, "quoted phrases", `-excluded` words and
`-"excluded phrases"`. Stemming is Snowball (English) from `snowballstemmer`; the query
grammar is small enough that no query-language library fits it better than a regex.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import snowballstemmer

# Words that carry no topic on their own; dropped from queries (never from phrases' inner
# positions, where they are matched as written). Hand-written: a list this short is clearer
# than a dependency.
STOPWORDS = frozenset(
    {"a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "into", "is"}
    | {"it", "of", "on", "or", "the", "to", "with", "via", "using"}
)

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_CLAUSE = re.compile(r'(-?)"([^"]*)"?|(\S+)')


def fold(text: str) -> str:
    """Lower-case text without accents (NFKD, combining marks dropped): "Étude" → "etude"."""
    if text.isascii():  # NFKD leaves ASCII as it is, and it has no combining marks
        return text.casefold()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


@lru_cache(maxsize=1)
def _stemmer() -> snowballstemmer.stemmer:
    return snowballstemmer.stemmer("english")


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """The Snowball stem of one folded word (cached: vocabularies are small)."""
    return str(_stemmer().stemWord(word))


def words(text: str) -> list[str]:
    """Folded words of `text`; hyphens and punctuation separate ("multi-task" → multi, task)."""
    return _WORD.findall(fold(text))


def tokenize(text: str) -> list[str]:
    """Stemmed tokens of `text`, in order (positions matter for phrases)."""
    return [stem(w) for w in words(text)]


@dataclass(frozen=True)
class Clause:
    """One positive or negative part of a query: a word (1 token) or a phrase (several)."""

    label: str  # as the subscriber wrote it, for the "matches: …" reason
    tokens: tuple[str, ...]
    phrase: bool
    # Consecutive unquoted words share a group: `mechanistic interpretability` is reported
    # as one match when both words match.
    group: int = 0


@dataclass(frozen=True)
class TopicQuery:
    """A parsed topic query: clauses that score, clauses that exclude."""

    include: tuple[Clause, ...]
    exclude: tuple[Clause, ...]

    @property
    def is_empty(self) -> bool:
        return not self.include and not self.exclude


def parse_query(raw: str) -> TopicQuery:
    """Parse `mechanistic "attention heads" -safety -"red teaming"`; never raises.

    A bare hyphenated word (`multi-task`) is a phrase of its parts; an unclosed quote runs
    to the end of the text; duplicates are dropped.
    """
    include: list[Clause] = []
    exclude: list[Clause] = []
    seen: set[tuple[bool, tuple[str, ...]]] = set()
    group, previous_bare = 0, False
    for match in _CLAUSE.finditer(raw or ""):
        neg_q, quoted, bare = match.group(1), match.group(2), match.group(3)
        if bare is not None:
            negative = bare.startswith("-") and len(bare) > 1
            text = bare[1:] if negative else bare
            quoted_phrase = False
        else:
            negative = bool(neg_q)
            text = quoted
            quoted_phrase = True
        parts = words(text)
        if not quoted_phrase and len(parts) == 1 and parts[0] in STOPWORDS:
            continue
        if not parts:
            continue
        tokens = tuple(stem(w) for w in parts)
        key = (negative, tokens)
        if key in seen:
            continue
        seen.add(key)
        bare_word = not quoted_phrase and not negative
        if not (bare_word and previous_bare):
            group += 1
        previous_bare = bare_word
        label = " ".join(text.split())
        clause = Clause(label=label, tokens=tokens, phrase=len(tokens) > 1, group=group)
        (exclude if negative else include).append(clause)
    return TopicQuery(include=tuple(include), exclude=tuple(exclude))


def count_phrase(tokens: list[str], phrase: tuple[str, ...], positions: list[int]) -> int:
    """How often `phrase` occurs in `tokens`, given the positions of its first token."""
    n = len(phrase)
    if n == 1:
        return len(positions)
    return sum(1 for p in positions if tuple(tokens[p : p + n]) == phrase)
