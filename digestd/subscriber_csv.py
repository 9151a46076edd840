"""Subscriber CSV import (all-or-nothing, streamed, batched) and export (streamed).

Columns: email,name,topics,categories,frequency,hour,timezone,max_items,format,status.
`categories` is comma-joined inside one quoted field. `frequency` is `daily` or `weekly`;
a weekly digest on another day than Monday is written `weekly:tue` (…`weekly:sun`) so that
export then import round-trips every preference without an extra column.

Import runs inside the caller's transaction: rows are validated and inserted batch by batch
(one query per batch to find existing addresses, executemany inserts), and any bad row makes
the whole import raise `ImportRejected` after the file has been read to the end, so the caller's
`session_scope` rolls everything back and every bad row is reported, each as `line N: reason`.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from sqlalchemy import bindparam, insert, update
from sqlmodel import Session, col, select

from digestd.models import Event, Subscriber, table_of
from digestd.statuses import SubscriberStatus, parse_subscriber_status
from digestd.subscribers import (
    ADDED,
    PREFERENCE_FIELDS,
    UPDATED,
    WEEKDAYS,
    InvalidInput,
    Preferences,
    admin_refusal,
    normalize_email,
    parse_weekday,
    preference_diff,
    set_by_admin,
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
DEFAULT_STATUS = SubscriberStatus.ACTIVE  # an admin importing a list vouches for those people


class ImportRejected(InvalidInput):
    """The file has bad rows: nothing was imported; `.report.errors` lists every one."""

    def __init__(self, report: ImportReport) -> None:
        n = len(report.errors)
        super().__init__(f"{n} bad row{'s' if n != 1 else ''}: nothing imported")
        self.report = report


@dataclass
class ImportReport:
    """What an import did (or, with dry_run, would do)."""

    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[str] = field(default_factory=list)
    dry_run: bool = False
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Row:
    line: int
    email: str
    prefs: Preferences
    status: SubscriberStatus


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
        sub.status,
    ]


def export_csv(
    session: Session, out: TextIO, *, status: str | None = None, batch_size: int = 1000
) -> int:
    """Write every subscriber (oldest first) as CSV, streaming in batches; returns the count."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    stmt = select(Subscriber).order_by(col(Subscriber.id))
    if status:
        stmt = stmt.where(Subscriber.status == status)
    count = 0
    for sub in session.exec(stmt.execution_options(yield_per=batch_size)):
        writer.writerow(subscriber_row(sub))
        count += 1
    return count


def _parse_row(cells: dict[str, str]) -> tuple[str, Preferences, SubscriberStatus]:
    """Validate one row's cells; InvalidInput names the first problem."""
    email = normalize_email(cells["email"])
    frequency, _, weekday = (cells["frequency"].strip() or "daily").partition(":")
    if weekday and frequency.strip().lower() != "weekly":
        raise InvalidInput(f"frequency {cells['frequency']!r}: only weekly takes a day")
    # Text as it came: validated() coerces and checks every field ("7", "cs.CL,cs.LG").
    raw: dict[str, Any] = {
        "name": cells["name"],
        "topics": cells["topics"],
        "categories": cells["categories"],
        "frequency": frequency,
        "send_hour": cells["hour"].strip() or 8,
        "send_weekday": parse_weekday(weekday) if weekday else 0,
        "timezone": cells["timezone"].strip() or "UTC",
        "max_items": cells["max_items"].strip() or 10,
        "format": cells["format"].strip() or "html",
    }
    prefs = Preferences(**raw).validated()
    try:
        status = parse_subscriber_status(cells["status"]) if cells["status"].strip() else None
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    return email, prefs, status or DEFAULT_STATUS


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


def _records(
    stream: TextIO, errors: list[str]
) -> Iterator[tuple[int, dict[str, str] | None, str | None]]:
    """(first line, cells, problem) per CSV record; header problems end the file early."""
    reader = csv.reader(stream)
    try:
        header = next(reader, None)
    except (csv.Error, UnicodeDecodeError) as exc:
        errors.append(f"line 1: cannot read the header ({_reason(exc)})")
        return
    if not header:
        errors.append("line 1: the file is empty (expected a header: " + ",".join(COLUMNS) + ")")
        return
    names = [h.strip().lower() for h in header]
    missing = [c for c in COLUMNS if c not in names]
    unknown = [h for h in names if h not in COLUMNS]
    if missing or unknown or len(set(names)) != len(names):
        parts = []
        if missing:
            parts.append("missing " + ",".join(missing))
        if unknown:
            parts.append("unknown " + ",".join(unknown))
        if not parts:
            parts.append("repeated column")
        errors.append(f"line 1: header must be {','.join(COLUMNS)} ({'; '.join(parts)})")
        return
    last_line = reader.line_num
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError) as exc:
            # The parser cannot continue past this point: report where and stop reading.
            errors.append(f"line {last_line + 1}: {_reason(exc)}; the rest was not read")
            return
        start, last_line = last_line + 1, reader.line_num
        if not cells:
            continue  # a blank line
        if len(cells) != len(names):
            yield start, None, f"{len(cells)} fields, expected {len(names)}"
            continue
        yield start, dict(zip(names, cells, strict=True)), None


def _line_number(error: str) -> int:
    number = error.removeprefix("line ").split(":", 1)[0]
    return int(number) if number.isdigit() else 0


def _reason(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "not valid UTF-8 text"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def import_csv(
    session: Session,
    path: str | Path,
    *,
    actor: str,
    now: datetime,
    update_existing: bool = False,
    dry_run: bool = False,
    batch_size: int = 1000,
    on_bytes: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import a subscriber CSV inside the caller's transaction (ImportRejected on bad rows)."""
    started = time.perf_counter()
    report = ImportReport(dry_run=dry_run)
    seen: dict[str, int] = {}  # email -> first line, for duplicates inside the file
    batch: list[_Row] = []

    def flush() -> None:
        if batch:
            _apply_batch(session, batch, report, update_existing, dry_run, actor, now)
            batch.clear()

    with open(path, "rb") as raw:
        text = io.TextIOWrapper(
            io.BufferedReader(_CountingReader(raw, on_bytes), 1 << 16),
            encoding="utf-8-sig",
            newline="",
        )
        for line, cells, problem in _records(text, report.errors):
            report.rows += 1
            if problem is not None or cells is None:
                report.errors.append(f"line {line}: {problem}")
                continue
            try:
                email, prefs, status = _parse_row(cells)
            except InvalidInput as exc:
                report.errors.append(f"line {line}: {exc}")
                continue
            first = seen.setdefault(email, line)
            if first != line:
                report.errors.append(f"line {line}: {email} repeats line {first}")
                continue
            batch.append(_Row(line, email, prefs, status))
            if len(batch) >= batch_size:
                flush()
        flush()
    report.seconds = time.perf_counter() - started
    if report.errors:
        # Rows already in the database are found per batch, after later rows' own errors.
        report.errors.sort(key=_line_number)
        raise ImportRejected(report)
    return report


def _apply_batch(
    session: Session,
    batch: list[_Row],
    report: ImportReport,
    update_existing: bool,
    dry_run: bool,
    actor: str,
    now: datetime,
) -> None:
    """Check one batch against the database (one query) and write it (a few executemany)."""
    emails = [row.email for row in batch]
    existing = {
        sub.email: sub
        for sub in session.exec(select(Subscriber).where(col(Subscriber.email).in_(emails)))
    }
    # Once any row is bad the import will be rolled back: keep validating, stop writing.
    write = not dry_run and not report.errors
    new_rows: list[dict[str, Any]] = []
    new_lines: dict[str, _Row] = {}
    updates: list[dict[str, Any]] = []
    moves: list[tuple[Subscriber, _Row]] = []  # status changes, through subscribers' transitions
    events: list[dict[str, Any]] = []
    for row in batch:
        sub = existing.get(row.email)
        if sub is None:
            report.added += 1
            values = {**row.prefs.as_dict(), "email": row.email, "status": row.status.value}
            values.update(
                created_at=now,
                confirmed_at=now if row.status == SubscriberStatus.ACTIVE else None,
                unsubscribed_at=now if row.status == SubscriberStatus.UNSUBSCRIBED else None,
                bounce_count=0,
                token_version=1,
            )
            new_rows.append(values)
            new_lines[row.email] = row
            continue
        if not update_existing:
            report.errors.append(
                f"line {row.line}: {row.email} already exists (use --update-existing to update it)"
            )
            continue
        refusal = admin_refusal(sub, row.status)
        if refusal is not None:
            report.errors.append(f"line {row.line}: {refusal}")
            continue
        changes = preference_diff(sub, row.prefs)
        if not changes and row.status == sub.status:
            report.unchanged += 1
            continue
        report.updated += 1
        if changes:
            values = {name: getattr(row.prefs, name) for name in PREFERENCE_FIELDS}
            values["b_id"] = sub.id
            updates.append(values)
            detail = {"line": row.line, "via": "import", "changes": changes}
            events.append(_event(sub.id, UPDATED, actor, now, detail))
        if row.status != sub.status:
            moves.append((sub, row))
    if not write:
        return
    for sub, row in moves:  # rare next to preference changes: one ORM update each
        set_by_admin(
            session, sub, row.status, actor=actor, now=now, reason=f"import line {row.line}"
        )
    table = table_of(Subscriber)
    conn = session.connection()
    if new_rows:
        # Plain executemany, then one SELECT for the ids: INSERT … RETURNING over a whole
        # batch made psycopg re-parse a huge statement per batch (3x slower on PostgreSQL).
        conn.execute(insert(table), new_rows)
        returned = conn.execute(
            select(table.c.id, table.c.email).where(table.c.email.in_(list(new_lines)))
        )
        for sub_id, email in returned:
            row = new_lines[email]
            detail = {
                "status": row.status,
                **row.prefs.as_dict(),
                "line": row.line,
                "via": "import",
            }
            events.append(_event(sub_id, ADDED, actor, now, detail))
    if updates:
        stmt = (
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values({name: bindparam(name) for name in updates[0] if name != "b_id"})
        )
        conn.execute(stmt, updates)
    if events:
        conn.execute(insert(table_of(Event)), events)


def _event(sub_id: int | None, action: str, actor: str, now: datetime, detail: dict) -> dict:
    return {
        "subscriber_id": sub_id,
        "action": action,
        "actor": actor,
        "detail": detail,
        "created_at": now,
    }
