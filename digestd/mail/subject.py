"""A digest's subject line: what is inside, not a generic label.

"Successor Heads, and 9 more papers · Sun 6 Dec": the top paper's short title, how many
more, and the subscriber's local day, within `MAX_SUBJECT` characters (78, the line length
RFC 5322 recommends and about what a phone's inbox shows), whatever the title's length.
"""

from __future__ import annotations

import re
from datetime import date

from digestd.mail.mime import one_line

MAX_SUBJECT = 78
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Where a title's name ends: "DuoAttention: Efficient…", "Does X Scale? Evidence…",
# "Mana — Dexterous…". The name must be at least a word of three letters.
_NAME_END = re.compile(r"(?<=\S{3})(?::\s|\?\s|\s[-–—]\s)")


def date_label(day: date) -> str:
    """'Thu 26 Nov 2026' (spelled out: strftime("%a %b") follows the process locale)."""
    return f"{_DAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1]} {day.year}"


def short_date(day: date) -> str:
    """'Sun 6 Dec': the day as an inbox line shows it (the year is the mail's own)."""
    return f"{_DAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1]}"


def count_label(n: int) -> str:
    """'1 paper', '7 papers'."""
    return f"{n} paper" if n == 1 else f"{n} papers"


def short_title(title: str, limit: int) -> str:
    """A title's name ("Successor Heads" of "Successor Heads: Recurring, …"), or the title
    cut at a word with "…", within `limit` characters."""
    text = one_line(" ".join(title.split())) or "(untitled)"
    found = _NAME_END.search(text)
    if found is not None:
        name = text[: found.start() + (1 if text[found.start()] == "?" else 0)]
        if len(name) <= limit:
            return name
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 1)].rsplit(" ", 1)[0].rstrip(",;:-–— ")
    return (cut or text[: max(limit - 1, 1)]) + "…"


def subject_line(day: date, count: int, top_title: str) -> str:
    """'Successor Heads, and 9 more papers · Sun 6 Dec' (one line, locale independent, at
    most MAX_SUBJECT characters); `day` is the subscriber's local date (digests.local_day),
    `top_title` the first paper's title."""
    tail = f" · {short_date(day)}"
    if count > 1:
        more = count - 1
        tail = f", and {more} more {'paper' if more == 1 else 'papers'}{tail}"
    return short_title(top_title, MAX_SUBJECT - len(tail)) + tail
