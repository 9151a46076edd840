"""The subscriber CSV format: writing a row, reading what people have (our export,
Mailchimp's and listmonk's), and checking each row. No database here: the import and export
use cases are `digestd.subscribers.importing`.

Export columns: email,name,topics,categories,frequency,hour,timezone,max_items,format,status.
`categories` is comma-joined inside one quoted field. `frequency` is `daily` or `weekly`;
a weekly digest on another day than Monday is written `weekly:tue` (…`weekly:sun`) so that
export then import round-trips every preference without an extra column.

Exports are safe to open in a spreadsheet (OWASP "CSV Injection"): a cell that starts with
`=`, `+`, `-`, `@`, a tab or a carriage return would be run as a formula by Excel, LibreOffice
or Google Sheets, and names and topics come from the public form. Such a cell is written with
a leading `'` (the spreadsheets' own "this is text" mark); so is a cell that already starts
with quotes before one of those characters, so that the importer, which removes exactly one
leading `'` where it is followed by (quotes and) such a character, gets every value back as
it was (`spreadsheet_safe` / `undo_spreadsheet_safe` are exact inverses). `--raw` writes and
reads the values as they are, for machines.

Reading takes what people have: only `email` is required, the other columns are optional and
in any order, and common export headers are understood case-insensitively (`Email Address`,
`E-mail`, `First Name` + `Last Name`, the listmonk and the Mailchimp export layouts; see
`_header`), including their consent times (Mailchimp's OPTIN_TIME, OPTIN_IP, CONFIRM_TIME,
UNSUB_TIME, CLEAN_TIME, listmonk's created_at). A missing column is an empty cell, and an
empty cell takes the default of `subscribers add` (status: active, since an admin importing
a list vouches for those people).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from digestd.core.models import Subscriber
from digestd.core.statuses import StoppedBy, SubscriberStatus, parse_subscriber_status
from digestd.subscribers.preferences import (
    WEEKDAYS,
    InvalidInput,
    Preferences,
    normalize_email,
)

COLUMNS = (
    "email",
    "name",
    "topics",
    "categories",
    "frequency",
    "hour",
    "timezone",
    "max_items",
    "format",
    "status",
)
# What `export --status bounced|unsubscribed` adds, so the file loads into another tool's
# suppression list: why mail stopped, when (ISO 8601 UTC) and which way (`STOP_WAYS`).
# Import reads past them (they are the record of an ending, not a preference).
STOP_COLUMNS = ("reason", "date", "way")
# How mail stopped, in words another tool understands (from `stopped_by`).
STOP_WAYS = {
    StoppedBy.BOUNCE: "bounce",
    StoppedBy.COMPLAINT: "complaint",
    StoppedBy.PERSON: "link",
    StoppedBy.MAIL: "mail",
    StoppedBy.ADMIN: "admin",
}
DEFAULT_STATUS = SubscriberStatus.ACTIVE  # an admin importing a list vouches for those people
S = SubscriberStatus


# ---- writing --------------------------------------------------------------------------------

# A cell starting with one of these (after any quotes) is neutralized on export.
_FORMULA = re.compile(r"'*[=+\-@\t\r]")


def spreadsheet_safe(cell: str) -> str:
    """The cell as a spreadsheet shows it as text and never runs (a `'` before a formula)."""
    return "'" + cell if _FORMULA.match(cell) else cell


def undo_spreadsheet_safe(cell: str) -> str:
    """The value `spreadsheet_safe` was given: one leading `'` removed where it added one."""
    return cell[1:] if cell.startswith("'") and _FORMULA.match(cell, 1) else cell


def frequency_cell(frequency: str, weekday: int) -> str:
    """The CSV form of frequency + weekday (`weekly:tue` unless Monday)."""
    if frequency == "weekly" and weekday != 0:
        return f"weekly:{WEEKDAYS[weekday]}"
    return frequency


def subscriber_row(sub: Subscriber) -> list[str]:
    """One subscriber as CSV cells, in COLUMNS order."""
    return [
        sub.email,
        sub.name,
        sub.topics,
        ",".join(sub.categories),
        frequency_cell(sub.frequency, sub.send_weekday),
        str(sub.send_hour),
        sub.timezone,
        str(sub.max_items),
        sub.format,
        str(sub.status),
    ]


def stop_row(sub: Subscriber, reason: str) -> list[str]:
    """The STOP_COLUMNS cells of a subscriber mail no longer goes to."""
    when = sub.stopped_at or sub.unsubscribed_at
    way = STOP_WAYS.get(sub.stopped_by) if sub.stopped_by else None
    return [reason, when.isoformat() if when else "", way or ""]


class Writer:
    """A CSV writer whose cells are spreadsheet-safe unless `raw`."""

    def __init__(self, out: TextIO, *, raw: bool = False) -> None:
        self._csv = csv.writer(out, lineterminator="\n")
        self._raw = raw

    def row(self, cells: list[str]) -> None:
        """Write one row."""
        self._csv.writerow(cells if self._raw else [spreadsheet_safe(c) for c in cells])


# ---- reading what people have ------------------------------------------------------------


def _key(header: str) -> str:
    """A header compared loosely: case, spaces, `-` and `_` ignored (`E-mail` == `email`)."""
    return re.sub(r"[\s_\-]+", "", header.strip().lower())


# Our fields and the header spellings that mean them (as `_key`s).
ALIASES: dict[str, tuple[str, ...]] = {
    "email": ("email", "emailaddress", "mail", "mailaddress"),
    "name": ("name", "fullname", "displayname"),
    "first_name": ("firstname", "givenname", "fname"),
    "last_name": ("lastname", "surname", "familyname", "lname"),
    "topics": ("topics",),
    "categories": ("categories",),
    "frequency": ("frequency",),
    "hour": ("hour", "sendhour"),
    "timezone": ("timezone", "tz"),  # also Mailchimp's TIMEZONE (an IANA name)
    "max_items": ("maxitems",),
    "format": ("format",),
    "status": ("status",),
    # Consent: when and from where the person opted in and confirmed (Mailchimp; listmonk's
    # created_at), and when it ended. Mailchimp exports one file per status; UNSUB_TIME and
    # CLEAN_TIME also say which file a row came from.
    "optin_time": ("optintime", "createdat", "subscribedat"),
    "optin_ip": ("optinip",),
    "confirm_time": ("confirmtime", "confirmedat"),
    "confirm_ip": ("confirmip",),
    "unsub_time": ("unsubtime", "unsubscribedat"),
    "clean_time": ("cleantime",),
}
_FIELD_OF = {alias: name for name, aliases in ALIASES.items() for alias in aliases}

# Columns of known export layouts that we read past (nothing of ours to keep in them).
# listmonk (Subscribers → Export): uuid,email,name,attributes,status,created_at,updated_at.
LISTMONK_SKIPPED = frozenset({"uuid", "attributes", "updatedat"})
# Mailchimp (Audience → Export audience): "Email Address","First Name","Last Name", the
# audience's merge fields, then its system columns; the unsubscribed and cleaned files add
# UNSUB_* and CLEAN_* columns.
MAILCHIMP_SYSTEM = frozenset(
    _key(c)
    for c in (
        "MEMBER_RATING",
        "LATITUDE",
        "LONGITUDE",
        "GMTOFF",
        "DSTOFF",
        "CC",
        "REGION",
        "LAST_CHANGED",
        "LEID",
        "EUID",
        "NOTES",
        "TAGS",
        "UNSUB_CAMPAIGN_TITLE",
        "UNSUB_CAMPAIGN_ID",
        "UNSUB_REASON",
        "UNSUB_REASON_OTHER",
        "CLEAN_CAMPAIGN_TITLE",
        "CLEAN_CAMPAIGN_ID",
    )
)
# A new Mailchimp audience's default merge fields: skipped in a file with Mailchimp's columns.
MAILCHIMP_DEFAULT_FIELDS = frozenset({"address", "phonenumber", "birthday", "company"})

# Status words of other tools, mapped to ours (ours are accepted as they are), with why
# mail stopped and whether the address is suppressed (no mail at all, not even a confirmation).
STATUS_WORDS: dict[str, tuple[SubscriberStatus, StoppedBy | None, bool]] = {
    "subscribed": (S.ACTIVE, None, False),  # Mailchimp
    "enabled": (S.ACTIVE, None, False),  # listmonk
    "confirmed": (S.ACTIVE, None, False),
    "unconfirmed": (S.PENDING, None, False),
    "disabled": (S.SUSPENDED, StoppedBy.ADMIN, False),  # listmonk: an admin stopped it
    "blocklisted": (S.UNSUBSCRIBED, StoppedBy.ADMIN, True),  # listmonk: never mail again
    "blacklisted": (S.UNSUBSCRIBED, StoppedBy.ADMIN, True),
    "cleaned": (S.BOUNCED, StoppedBy.BOUNCE, True),  # Mailchimp: hard bounces
}


@dataclass
class _Header:
    """Which cell of a row holds which of our fields."""

    fields: dict[str, int]  # our field -> cell index
    width: int  # cells per row
    skipped: list[str]  # columns read past (layout columns, or unknown with --ignore)


def _header(cells: list[str], *, ignore_unknown: bool) -> _Header | str:
    """Map a header row to our fields, or a one-line problem naming the columns at fault."""
    keys = [_key(c) for c in cells]
    mailchimp = any(k in MAILCHIMP_SYSTEM for k in keys)
    fields: dict[str, int] = {}
    skipped: list[str] = []
    unknown: list[str] = []
    for i, (raw, k) in enumerate(zip(cells, keys, strict=True)):
        name = _FIELD_OF.get(k)
        if name is not None:
            if name in fields:
                first = cells[fields[name]].strip()
                return f"columns {first!r} and {raw.strip()!r} both mean {name}"
            fields[name] = i
        elif (
            k in LISTMONK_SKIPPED
            or k in STOP_COLUMNS  # an export of bounced or unsubscribed addresses
            or k in MAILCHIMP_SYSTEM
            or (mailchimp and k in MAILCHIMP_DEFAULT_FIELDS)
            or not k  # an unnamed column (a spreadsheet's trailing comma)
        ):
            skipped.append(raw.strip())
        else:
            unknown.append(raw.strip())
    if "email" not in fields:
        return 'no email column (the one required column; "Email Address" and "E-mail" work too)'
    if unknown and not ignore_unknown:
        quoted = ", ".join(repr(u) for u in unknown)
        return (
            f"unknown column{'s' if len(unknown) > 1 else ''} {quoted} "
            f"(known: {', '.join(COLUMNS)}, first_name, last_name; "
            "--ignore-unknown-columns skips unknown columns)"
        )
    return _Header(fields, len(cells), [c for c in skipped + unknown if c])


@dataclass
class Row:
    """One checked row: what to store, and every problem it has (empty: a good row)."""

    line: int
    email: str
    prefs: Preferences
    status: SubscriberStatus
    stopped_by: StoppedBy | None = None
    suppressed: bool = False
    optin_time: datetime | None = None
    optin_ip: str | None = None
    confirm_time: datetime | None = None
    stop_time: datetime | None = None  # UNSUB_TIME or CLEAN_TIME
    problems: list[str] = field(default_factory=list)


# 2023-04-11 08:12:45, ISO 8601 (T, fractions, Z or an offset), and Go's time.String() that
# listmonk writes (2024-01-05 10:21:33.142116 +0000 UTC). No offset: UTC (Mailchimp's times).
_TIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)"
    r"\s*(Z|[+-]\d{2}:?\d{2})?(?:\s+[A-Za-z]{1,5})?$"
)


def parse_time(text: str, what: str) -> datetime | None:
    """A consent time from a cell (None when empty), aware UTC; InvalidInput when unreadable."""
    value = text.strip()
    if not value:
        return None
    match = _TIME.match(value)
    if match is None:
        raise InvalidInput(f"{what} {value!r} is not a time like 2024-01-05 10:21:33")
    day, clock, zone = match.groups()
    clock = clock[:15] if "." not in clock else clock[: clock.index(".") + 7]
    offset = "+00:00" if zone in (None, "Z") else zone[:3] + ":" + zone[-2:]
    try:
        return datetime.fromisoformat(f"{day}T{clock}{offset}").astimezone(UTC)
    except ValueError:
        raise InvalidInput(f"{what} {value!r} is not a time like 2024-01-05 10:21:33") from None


def _status(cells: dict[str, str]) -> tuple[SubscriberStatus, StoppedBy | None, bool]:
    """The row's status: the status cell (ours or another tool's word), else what the
    Mailchimp file says (cleaned/unsubscribed), else the import default."""
    raw = cells.get("status", "").strip().lower()
    if raw:
        if raw in STATUS_WORDS:
            return STATUS_WORDS[raw]
        try:
            return parse_subscriber_status(raw), None, False
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
    if cells.get("clean_time", "").strip():
        return STATUS_WORDS["cleaned"]
    if cells.get("unsub_time", "").strip():
        return S.UNSUBSCRIBED, StoppedBy.PERSON, False
    return DEFAULT_STATUS, None, False


def _name(cells: dict[str, str]) -> str:
    """The name cell, or `First Name` + `Last Name` joined."""
    if "name" in cells:
        return cells["name"]
    parts = (cells.get("first_name", "").strip(), cells.get("last_name", "").strip())
    return " ".join(p for p in parts if p)


def parse_row(line: int, cells: dict[str, str], checked_email: str = "") -> Row:
    """Check one row's cells (by our field names): what to store and every problem.
    `checked_email`: its address, as an earlier pass over the same file normalized it."""
    problems: list[str] = []
    email = checked_email
    try:
        email = email or normalize_email(cells["email"])
    except InvalidInput as exc:
        problems.append(str(exc))
    frequency_text = cells.get("frequency", "").strip() or "daily"
    frequency, _, weekday = frequency_text.partition(":")
    if weekday and frequency.strip().lower() != "weekly":
        problems.append(f"frequency {frequency_text!r}: only weekly takes a day")
        weekday = ""
    # Text as it came: checked() coerces and checks every field ("7", "cs.CL,cs.LG").
    raw: dict[str, Any] = {
        "name": _name(cells),
        "topics": cells.get("topics", ""),
        "categories": cells.get("categories", ""),
        "frequency": frequency,
        "send_hour": cells.get("hour", "").strip() or 8,
        "send_weekday": weekday or 0,
        "timezone": cells.get("timezone", "").strip() or "UTC",
        "max_items": cells.get("max_items", "").strip() or 10,
        "format": cells.get("format", "").strip() or "html",
    }
    prefs, pref_problems = Preferences(**raw).checked()
    problems.extend(pref_problems)
    row = Row(line, email, prefs, DEFAULT_STATUS, problems=problems)
    try:
        row.status, row.stopped_by, row.suppressed = _status(cells)
    except InvalidInput as exc:
        problems.append(str(exc))
    for name, what in (("optin_time", "opt-in time"), ("confirm_time", "confirm time")):
        try:
            setattr(row, name, parse_time(cells.get(name, ""), what))
        except InvalidInput as exc:
            problems.append(str(exc))
    try:
        stop = cells.get("clean_time", "") or cells.get("unsub_time", "")
        row.stop_time = parse_time(stop, "unsubscribe time")
    except InvalidInput as exc:
        problems.append(str(exc))
    ip = (cells.get("optin_ip", "") or cells.get("confirm_ip", "")).strip()
    row.optin_ip = ip[:64] or None
    return row


def first_bad_utf8(path: str | Path, chunk: int = 1 << 16) -> tuple[int, int, int] | None:
    """(byte offset, byte value, line) of the first byte that is not UTF-8, or None."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0  # bytes read before this chunk
    lines = 1
    with open(path, "rb") as raw:
        while True:
            data = raw.read(chunk)
            held = decoder.getstate()[0]  # a split character's first bytes, kept back
            try:
                decoder.decode(data, final=not data)
            except UnicodeDecodeError as exc:
                # exc.start counts in the held-back bytes followed by this chunk.
                at = offset - len(held) + exc.start
                line = lines + bytes(exc.object[: exc.start]).count(b"\n")
                return at, exc.object[exc.start], line
            if not data:
                return None
            lines += data.count(b"\n")
            offset += len(data)


def encoding_problem(path: str | Path) -> str:
    found = first_bad_utf8(path)
    where = f"byte 0x{found[1]:02X} at offset {found[0]} (line {found[2]})" if found else "a byte"
    return (
        f"not UTF-8 text: {where} cannot be decoded; save the file as UTF-8 "
        '(in Excel: "CSV UTF-8") and import it again'
    )


class _CountingReader(io.RawIOBase):
    """Counts bytes as the CSV parser pulls them, to drive a progress bar while streaming."""

    def __init__(self, raw: BinaryIO, on_bytes: Callable[[int], None] | None) -> None:
        self._raw = raw
        self._on_bytes = on_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        if n and self._on_bytes:
            self._on_bytes(n)
        return n


@dataclass
class Record:
    """One CSV record: where it starts, its cells as read, our fields (None when the row
    has the wrong number of cells), and a problem with the record itself."""

    line: int
    cells: list[str]
    fields: dict[str, str] | None
    problem: str | None = None


@dataclass
class Reading:
    """What reading the header told: the columns, the ones read past, or a file problem;
    and a problem that stopped reading part way (a broken quote)."""

    header: list[str] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    file_error: str | None = None
    stopped: str | None = None


def records(
    stream: TextIO, reading: Reading, *, ignore_unknown: bool, raw: bool = False
) -> Iterator[Record]:
    """The records of a CSV stream, with the export's spreadsheet-safe quoting undone unless
    `raw`. A header problem sets `reading.file_error` and ends the file; a decoding error
    propagates (the caller names the byte: `encoding_problem`)."""
    reader = csv.reader(stream)
    try:
        header_cells = next(reader, None)
    except csv.Error as exc:
        reading.file_error = f"line 1: cannot read the header ({_reason(exc)})"
        return
    if not header_cells or not any(c.strip() for c in header_cells):
        reading.file_error = "line 1: the file is empty (expected a header with an email column)"
        return
    header = _header(header_cells, ignore_unknown=ignore_unknown)
    if isinstance(header, str):
        reading.file_error = f"line 1: {header}"
        return
    reading.header = header_cells
    reading.ignored_columns = header.skipped
    undo = (lambda c: c) if raw else undo_spreadsheet_safe
    last_line = reader.line_num
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # The parser cannot continue past this point: report where and stop reading.
            reading.stopped = f"line {last_line + 1}: {_reason(exc)}; the rest was not read"
            return
        start, last_line = last_line + 1, reader.line_num
        if not any(c.strip() for c in cells):
            continue  # a blank line, or a spreadsheet's row of empty cells
        if len(cells) != header.width:
            yield Record(start, cells, None, f"{len(cells)} fields, expected {header.width}")
            continue
        yield Record(start, cells, {name: undo(cells[i]) for name, i in header.fields.items()})


def open_text(binary: BinaryIO, on_bytes: Callable[[int], None] | None) -> TextIO:
    """A file's bytes as UTF-8 text (a BOM, what Excel writes, is skipped), counting bytes
    for a progress bar."""
    return io.TextIOWrapper(
        io.BufferedReader(_CountingReader(binary, on_bytes), 1 << 16),
        encoding="utf-8-sig",
        newline="",
    )


def _reason(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
