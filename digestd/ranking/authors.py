"""Author names as a reader types them and as feeds spell them, made comparable.

"Y. LeCun", "LeCun, Yann", "Yann A. LeCun" and "yann lecun" are one person; "Yves LeCun" is
another. A name is reduced to its last name and first name, both folded: accents and other
letters transliterated to ASCII by `anyascii` (ISC licence; NFKD alone keeps "ø", "ł" and
"ß", which are letters of their own, not accented ones, so "Søren" would never meet
"Soren"), case dropped, "Last, First" put back in order, middle names and suffixes ignored,
particles ("van der", "Le") kept in the last name, a trailing "et al." dropped. Two names
match when the last names are equal and the first names agree: the same initial, and the
same name when both are written out. A name with no first name ("LeCun") matches every
first name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from anyascii import anyascii

# Words that stand before a last name and belong to it ("Laurens van der Maaten").
_PARTICLES = frozenset(
    {"van", "von", "der", "den", "de", "del", "della", "di", "da", "du", "la", "le", "dos"}
)
_SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv"})
# Periods separate initials ("Y.A.LeCun"); hyphens join parts of one name ("Jean-Pierre").
_TOKEN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


@dataclass(frozen=True)
class AuthorName:
    """A name as matching reads it: folded last name and first name ("" when unknown)."""

    last: str
    first: str = ""

    @property
    def initial(self) -> str:
        """The first name's initial, or ""."""
        return self.first[:1]


def _tokens(text: str) -> list[str]:
    return [t.replace("-", "") for t in _TOKEN.findall(anyascii(text).lower())]


@lru_cache(maxsize=65536)
def parse(raw: str) -> AuthorName:
    """The comparable form of one name; an empty `last` when there is no name in it."""
    text = " ".join(raw.split())
    if "," in text:
        # "LeCun, Yann" (and "King, Martin Luther, Jr."): the last name comes first.
        head, _, rest = text.partition(",")
        given = [p for p in rest.split(",") if set(_tokens(p)) - _SUFFIXES]
        text = " ".join([*given, head])
    tokens = [t for t in _tokens(text) if t not in _SUFFIXES]
    if tokens[-2:] == ["et", "al"]:  # "B. Author et al.": the last of a shortened list
        tokens = tokens[:-2]
    if not tokens:
        return AuthorName("")
    if len(tokens) > 1 and len(tokens[-1]) == 1 and len(tokens[0]) > 1:
        # "LeCun Y" (a bibliography's order without a comma): the initial comes last.
        tokens = tokens[-1:] + tokens[:-1]
    if len(tokens) == 1:
        return AuthorName(tokens[0])
    start = len(tokens) - 1
    while start > 1 and tokens[start - 1] in _PARTICLES:
        start -= 1
    return AuthorName("".join(tokens[start:]), tokens[0])


def same_person(a: AuthorName, b: AuthorName) -> bool:
    """Whether two parsed names can be the same person (see the module's rule)."""
    if not a.last or a.last != b.last:
        return False
    if not a.first or not b.first:
        return True
    if a.initial != b.initial:
        return False
    return len(a.first) == 1 or len(b.first) == 1 or a.first == b.first


def key(raw: str) -> tuple[str, str]:
    """(last name, first initial): equal for every spelling of one person's name (two
    people may share it: `same_person` tells them apart when both first names are full)."""
    name = parse(raw)
    return name.last, name.initial


class AuthorSet:
    """Names a reader follows or mutes, ready to be looked for among a paper's authors."""

    def __init__(self, names: Iterable[str]) -> None:
        self._by_last: dict[str, list[tuple[AuthorName, str]]] = {}
        for raw in names:
            name = parse(raw)
            if name.last:
                self._by_last.setdefault(name.last, []).append((name, raw))

    def __bool__(self) -> bool:
        return bool(self._by_last)

    def first_match(self, authors: Sequence[str]) -> str | None:
        """The reader's own spelling of the first of `authors` in the set, or None."""
        for author in authors:
            name = parse(author)
            for wanted, raw in self._by_last.get(name.last, ()):
                if same_person(wanted, name):
                    return raw
        return None


def dedupe(names: Iterable[str]) -> list[str]:
    """The names (whitespace collapsed), each name once: a later spelling of a name already
    given ("LeCun, Yann" after "Yann LeCun") is dropped; "Y. LeCun" stays (it is broader)."""
    out: list[str] = []
    seen: set[AuthorName] = set()
    for raw in names:
        text = " ".join(raw.split())
        name = parse(text)
        if name.last and name not in seen:
            seen.add(name)
            out.append(text)
    return out


def without(names: Iterable[str], removed: Iterable[str]) -> list[str]:
    """`names` less every one that is the same person as one of `removed`."""
    gone = AuthorSet(removed)
    return [n for n in names if gone.first_match([n]) is None]
