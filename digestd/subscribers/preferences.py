"""What a person may tell us: their address and their preferences, checked and normalized.

No database here: the use cases, the web forms, the CSV import and the mail commands all
check input with these functions, so a value is accepted or refused the same way (one line
saying what is wrong) whichever way it comes in.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from email_validator import EmailNotValidError, validate_email

from digestd.core.models import FORMATS, FREQUENCIES
from digestd.ranking import authors

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MAX_ITEMS_RANGE = (1, 100)
NAME_MAX = 200
TOPICS_MAX = 1000
CATEGORIES_MAX = 50
AUTHORS_MAX = 200  # names followed, and names muted, each
AUTHOR_NAME_MAX = 200
LOCAL_PART_MAX_OCTETS = 64  # RFC 5321 4.5.3.1.1: longer ones bounce
# arXiv style (cs.CL, q-bio.NC, hep-th, astro-ph.GA) and other feeds' tags: no commas/spaces.
_CATEGORY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")
# Control characters (NUL, escape, …) and line/paragraph separators: never part of a name or
# topics, and a name reaches the To: header of every digest.
_CONTROL_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})


class InvalidInput(ValueError):
    """Bad input from a person; the message is one line saying what is wrong."""


def normalize_email(raw: str) -> str:
    """The canonical form of an address, so one person is stored (and mailed) once."""
    value = (raw or "").strip()
    if not value:
        raise InvalidInput("email address is empty")
    try:
        info = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"{value!r} is not a valid email address: {exc}") from None
    # email-validator keeps the local part's case; virtually every mailbox provider ignores
    # it, and treating Ada@x and ada@x as two subscribers would mail one person twice.
    return info.normalized.lower()


def deliverable_email(raw: str, *, smtputf8: bool) -> str:
    """`normalize_email`, refusing what our relay could not deliver: a local part over 64
    octets, or a non-ASCII one when the relay lacks SMTPUTF8 (DIGESTD_SMTP_SMTPUTF8). A
    sign-up is refused at once instead of every digest failing later."""
    email = normalize_email(raw)
    local = email.rpartition("@")[0]
    octets = len(local.encode("utf-8"))
    if octets > LOCAL_PART_MAX_OCTETS:
        raise InvalidInput(
            f"{email!r} cannot be delivered: the part before the @ is {octets} bytes long "
            f"(mail servers take at most {LOCAL_PART_MAX_OCTETS})"
        )
    if not smtputf8 and not local.isascii():
        raise InvalidInput(
            f"{email!r} cannot be delivered from here: our mail server does not take "
            "addresses with non-ASCII characters before the @"
        )
    return email


@lru_cache(maxsize=1)
def _zones_by_lower() -> dict[str, str]:
    return {name.lower(): name for name in available_timezones()}


def validate_timezone(name: str) -> str:
    """The canonical IANA name for `name` (case-insensitive), or InvalidInput."""
    value = (name or "").strip()
    canonical = _zones_by_lower().get(value.lower())
    if canonical is None:
        raise InvalidInput(f"unknown time zone {value!r} (use an IANA name like Europe/Berlin)")
    try:
        ZoneInfo(canonical)
    except (ZoneInfoNotFoundError, ValueError):  # pragma: no cover - tzdata is a dependency
        raise InvalidInput(f"unknown time zone {value!r}") from None
    return canonical


def parse_weekday(value: str | int) -> int:
    """0 (Monday) … 6 (Sunday) from `mon`…`sun`, a full day name, or a number 0-6."""
    if isinstance(value, int):
        if 0 <= value <= 6:
            return value
        raise InvalidInput(f"weekday must be 0-6 or mon..sun, got {value}")
    text = str(value).strip().lower()
    if text.isdigit() and 0 <= int(text) <= 6:
        return int(text)
    if text[:3] in WEEKDAYS and (len(text) == 3 or text in _FULL_DAYS):
        return WEEKDAYS.index(text[:3])
    raise InvalidInput(f"weekday must be one of {', '.join(WEEKDAYS)}, got {value!r}")


def parse_categories(value: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """Categories from `cs.CL,cs.LG` or a list: checked, de-duplicated, order kept."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        cat = str(item).strip()
        if not cat:
            continue
        if not _CATEGORY_RE.match(cat):
            raise InvalidInput(f"category {cat!r} is not valid (expected names like cs.CL)")
        if cat not in out:
            out.append(cat)
    if len(out) > CATEGORIES_MAX:
        raise InvalidInput(f"at most {CATEGORIES_MAX} categories, got {len(out)}")
    return out


def parse_authors(value: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """Author names from `Yann LeCun; Percy Liang` (or one a line, or a list): each name
    once (ranking/authors.py says when two spellings are one name), as written, order kept."""
    if value is None:
        return []
    if isinstance(value, str):
        items = [part for line in value.splitlines() for part in line.split(";")]
    else:
        items = [str(item) for item in value]
    for item in items:
        text = _one_line(item, "author name", AUTHOR_NAME_MAX)
        if text and not authors.parse(text).last:
            raise InvalidInput(f"author name {text!r} has no letters in it")
    out = authors.dedupe(items)
    if len(out) > AUTHORS_MAX:
        raise InvalidInput(f"at most {AUTHORS_MAX} authors, got {len(out)}")
    return out


def _int_in(value: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool):
        raise InvalidInput(f"{what} must be a whole number {lo}-{hi}, got {value!r}")
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise InvalidInput(f"{what} must be a whole number {lo}-{hi}, got {value!r}") from None
    if not lo <= number <= hi:
        raise InvalidInput(f"{what} must be between {lo} and {hi}, got {number}")
    return number


def choice(value: Any, what: str, choices: tuple[str, ...]) -> str:
    """`value` lowercased if it is one of `choices`, else InvalidInput naming them."""
    text = str(value).strip().lower()
    if text not in choices:
        raise InvalidInput(f"{what} must be one of {', '.join(choices)}, got {value!r}")
    return text


def _one_line(value: Any, what: str, limit: int) -> str:
    text = "" if value is None else str(value).strip()
    if "\n" in text or "\r" in text:
        raise InvalidInput(f"{what} must be on one line")
    # str.isprintable() is False for every character of those categories (true of all of
    # Unicode), so printable text, nearly all of it, is not walked character by character.
    if not text.isprintable():
        bad = next((c for c in text if unicodedata.category(c) in _CONTROL_CATEGORIES), None)
        if bad is not None:
            raise InvalidInput(
                f"{what} must not contain control characters (found U+{ord(bad):04X})"
            )
    if len(text) > limit:
        raise InvalidInput(f"{what} is too long ({len(text)} characters, at most {limit})")
    return text


@dataclass
class Preferences:
    """What a subscriber wants; `validated()` checks and normalizes every field."""

    name: str = ""
    topics: str = ""
    categories: list[str] = field(default_factory=list)
    frequency: str = "daily"
    send_hour: int = 8
    send_weekday: int = 0  # 0 = Monday; used by weekly digests
    timezone: str = "UTC"
    max_items: int = 10
    format: str = "html"
    follows: list[str] = field(default_factory=list)
    muted_authors: list[str] = field(default_factory=list)

    def validated(self) -> Preferences:
        """A normalized copy (strings coerced: `"7"`, `"tue"`, `"cs.CL,cs.LG"`), or InvalidInput."""
        clean, problems = self.checked()
        if problems:
            raise InvalidInput(problems[0])
        return clean

    def checked(self) -> tuple[Preferences, list[str]]:
        """A normalized copy and every problem found, not only the first (an import reports
        each bad row whole); a field with a problem keeps its default in the copy."""
        values: dict[str, Any] = {}
        problems: list[str] = []
        for name, check in _CHECKS.items():
            try:
                values[name] = check(getattr(self, name))
            except InvalidInput as exc:
                problems.append(str(exc))
        return Preferences(**values), problems

    @classmethod
    def of(cls, sub: HasPreferences) -> Preferences:
        """The preferences currently stored on a subscriber."""
        return cls(**{f.name: getattr(sub, f.name) for f in fields(cls)})

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (for events and APIs)."""
        # Not dataclasses.asdict: its deep copy dominated the cost of a 100k-row import.
        data = {name: getattr(self, name) for name in PREFERENCE_FIELDS}
        for name in LIST_FIELDS:
            data[name] = list(getattr(self, name))
        return data


class HasPreferences(Protocol):
    """Anything carrying the preference fields (a Subscriber row, Preferences)."""

    name: str
    topics: str
    categories: list[str]
    frequency: str
    send_hour: int
    send_weekday: int
    timezone: str
    max_items: int
    format: str
    follows: list[str]
    muted_authors: list[str]


PREFERENCE_FIELDS = tuple(f.name for f in fields(Preferences))
LIST_FIELDS = ("categories", "follows", "muted_authors")
# The authors a reader follows and mutes: set on the preference page, by the CLI and by
# mail commands, never by a CSV file (whose rows do not carry them).
AUTHOR_FIELDS = ("follows", "muted_authors")

# One check per preference field: `validated` and `checked` both run exactly these.
_CHECKS: dict[str, Callable[[Any], Any]] = {
    "name": lambda v: _one_line(v, "name", NAME_MAX),
    "topics": lambda v: " ".join(_one_line(v, "topics", TOPICS_MAX).split()),
    "categories": parse_categories,
    "frequency": lambda v: choice(v, "frequency", FREQUENCIES),
    "send_hour": lambda v: _int_in(v, "hour", 0, 23),
    "send_weekday": parse_weekday,
    "timezone": validate_timezone,
    "max_items": lambda v: _int_in(v, "max items", *MAX_ITEMS_RANGE),
    "format": lambda v: choice(v, "format", FORMATS),
    "follows": parse_authors,
    "muted_authors": parse_authors,
}


def preference_diff(current: HasPreferences, wanted: Preferences) -> dict[str, list[Any]]:
    """{field: [old, new]} for each preference that differs (the detail of an update event)."""
    diff: dict[str, list[Any]] = {}
    for name in PREFERENCE_FIELDS:
        old, new = getattr(current, name), getattr(wanted, name)
        if old != new:
            diff[name] = [list(old) if isinstance(old, list) else old, new]
    return diff
