"""A paper's gist: the one sentence of its abstract that states the contribution.

Abstracts mostly open with background ("Large language models are increasingly…") and say
what the paper does a few sentences later ("We propose…", "This paper presents…", "We
show…"). The gist is that sentence, chosen offline without a model: sentences are scored
by the phrases authors use to state a contribution, the strongest kind wins, the earliest
of equals; an abstract without any such phrase gives its first sentence. Rules and not a
summarizer because they are instant, explainable, and never invent a word; a sentence
splitter needs only an abbreviation list here (a full tokenizer would be a large
dependency for the same result on abstracts).
"""

from __future__ import annotations

import re

MAX_CHARS = 240
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
# A fragment ending with one of these did not end a sentence ("e.g. OpenDRIVE").
_ABBREVIATIONS = re.compile(
    r"(?:\b(?:e\.g|i\.e|et al|etc|vs|cf|Fig|Figs|Eq|Eqs|Sec|No|approx|resp)\.|\b[A-Z]\.)$"
)
_WE = r"(?:we|here we|in this (?:paper|work|study|article),? we|to this end,? we)"
_SUBJECT = r"(?:this|the present|our) (?:paper|work|study|article|report|note|thesis)"
# (score, pattern): what the paper makes, then what it finds, then what it studies.
_CUES: tuple[tuple[int, re.Pattern[str]], ...] = (
    (
        3,
        re.compile(
            rf"\b(?:{_WE}(?: further| also| then| first)?|{_SUBJECT})\s+"
            r"(?:propose|present|introduce|develop|design|build|describe|release|formalize"
            r"|construct|create|devise|contribute|offer|provide)s?\b",
            re.IGNORECASE,
        ),
    ),
    (
        2,
        re.compile(
            rf"\b(?:{_WE}(?: further| also| then| first)?|{_SUBJECT})\s+"
            r"(?:show|demonstrate|find|prove|establish|report|reveal|argue|observe)s?\b",
            re.IGNORECASE,
        ),
    ),
    (
        1,
        re.compile(
            rf"\b(?:{_WE}|{_SUBJECT})\s+(?:study|studies|investigate|examine|explore|analy[sz]e"
            r"|address|evaluate|tackle|consider|focus)s?\b",
            re.IGNORECASE,
        ),
    ),
)


def sentences(text: str) -> list[str]:
    """The sentences of an abstract, on one line each."""
    parts = _SENTENCE_END.split(" ".join((text or "").split()))
    out: list[str] = []
    for part in parts:
        if out and _ABBREVIATIONS.search(out[-1]):
            out[-1] = f"{out[-1]} {part}"
        elif part:
            out.append(part)
    return out


def _score(sentence: str) -> int:
    if sentence.endswith("?"):  # "how can we build…?" asks, it does not state
        return 0
    return next((score for score, cue in _CUES if cue.search(sentence)), 0)


def gist(summary: str, max_chars: int = MAX_CHARS) -> str:
    """The abstract's contribution sentence, on one line, cut at a word past `max_chars`."""
    found = sentences(summary)
    if not found:
        return ""
    best = max(range(len(found)), key=lambda i: (_score(found[i]), -i))
    out = found[best]
    if len(out) > max_chars:
        out = out[: max_chars - 1].rsplit(" ", 1)[0].rstrip(",;:-–— ") + "…"
    return out
