"""Use cases of CSV files: importing subscribers (with their consent times) and exporting
them. The format is `csv_io`; every write goes through the store's bulk operations and the
lifecycle's rules, one batch at a time.

Import, without `skip_invalid`: all or nothing for bad rows, as before. The whole file is
checked first in read transactions (no write lock): one bad row, and nothing is imported,
every bad row listed. Then it is written in batches of DIGESTD_BATCH_SIZE rows, each its own
short transaction, so a running daemon keeps answering while a large file goes in (a single
transaction held SQLite's write lock for the whole file). If an import is interrupted while
writing, running it again with --update-existing finishes it: the rows already in are
unchanged.

With `skip_invalid`: one pass; good rows are imported batch by batch and each bad row is
written, with the input's columns plus `problems`, to the rejects file (beside the input,
or `rejects`). A status an existing address cannot take (an unsubscribed address asked to
be active) is a rejected row, not a stop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from sqlmodel import Session

from digestd.core.context import AppContext
from digestd.core.db import read_scope, refresh_statistics, session_scope
from digestd.core.statuses import ConsentVia, SubscriberStatus
from digestd.subscribers import csv_io, lifecycle, store
from digestd.subscribers.csv_io import Record, Row
from digestd.subscribers.lifecycle import Change, Consent
from digestd.subscribers.preferences import (
    AUTHOR_FIELDS,
    PREFERENCE_FIELDS,
    InvalidInput,
    preference_diff,
)

S = SubscriberStatus


class ImportRejected(InvalidInput):
    """The file has bad rows (nothing was imported) or a problem of its own; `.report.errors`
    lists every bad row."""

    def __init__(self, report: ImportReport, *, partial: bool = False) -> None:
        n = len(report.errors)
        if report.file_error:
            super().__init__(f"{report.file_error}; nothing imported")
        elif partial:
            super().__init__(
                f"{n} row{'s' if n != 1 else ''} changed while importing and were not "
                "imported; the others were"
            )
        else:
            super().__init__(f"{n} bad row{'s' if n != 1 else ''}: nothing imported")
        self.report = report


@dataclass
class ImportReport:
    """What an import did (or, with dry_run, would do)."""

    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)  # "line N: problem; problem"
    # A problem with the whole file (header, encoding): reported alone, as one line.
    file_error: str | None = None
    ignored_columns: list[str] = field(default_factory=list)
    dry_run: bool = False
    seconds: float = 0.0
    rejects_path: Path | None = None

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class ImportOptions:
    """How to import (the CLI's flags)."""

    update_existing: bool = False
    ignore_unknown_columns: bool = False
    dry_run: bool = False
    skip_invalid: bool = False
    rejects: Path | None = None
    raw: bool = False
    batch_size: int = 1000


def default_rejects_path(path: Path) -> Path:
    """Where --skip-invalid writes the rejected rows: beside the input."""
    return path.with_name(f"{path.stem}.rejects{path.suffix or '.csv'}")


def import_file(
    ctx: AppContext,
    path: Path,
    options: ImportOptions,
    *,
    on_bytes: Callable[[int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import a subscriber CSV (see the module docstring); ImportRejected when nothing (or,
    after a race, not everything) could be imported. `on_batch` is told the rows read so
    far after each batch is committed (no transaction is open then)."""
    started = time.perf_counter()
    written = False
    seen: dict[str, int] = {}  # normalized address -> its line, for duplicates in the file
    if options.skip_invalid and not options.dry_run:
        target = options.rejects or default_rejects_path(path)
        report = _run(
            ctx,
            path,
            options,
            seen,
            write=True,
            rejects=target,
            on_bytes=on_bytes,
            on_batch=on_batch,
        )
    else:
        report = _run(
            ctx, path, options, seen, write=False, rejects=None, on_bytes=on_bytes, on_batch=None
        )
        if not (report.file_error or report.dry_run or report.errors):
            # Checked whole and good: now written, batch by batch (bytes counted once), with
            # the addresses the check normalized (`seen`: each one validated once).
            report = _run(
                ctx,
                path,
                options,
                seen,
                write=True,
                checked=True,
                rejects=None,
                on_bytes=None,
                on_batch=on_batch,
            )
            written = True
    report.seconds = time.perf_counter() - started
    if report.file_error:
        report.errors = []
        raise ImportRejected(report)
    if report.errors and not options.skip_invalid:
        raise ImportRejected(report, partial=written)
    return report


class _Rejects:
    """The rejected rows, in line order: the report's lines, and (for --skip-invalid) a CSV
    with the input's columns plus `problems`, spreadsheet-safe like an export."""

    def __init__(self, report: ImportReport, out: TextIO | None, raw: bool) -> None:
        self.report = report
        self.out = out
        self.raw = raw
        self.pending: list[tuple[int, list[str], list[str]]] = []
        self.writer: csv_io.Writer | None = None

    def add(self, record: Record, problems: list[str]) -> None:
        self.pending.append((record.line, record.cells, problems))

    def flush(self, header: list[str]) -> None:
        # Rows found bad while parsing wait here for their batch's checks against the
        # database, so that both come out in line order.
        self.pending.sort(key=lambda item: item[0])
        for line, cells, problems in self.pending:
            self.report.rejected += 1
            self.report.errors.append(f"line {line}: {'; '.join(problems)}")
            if self.out is None:
                continue
            if self.writer is None:
                self.writer = csv_io.Writer(self.out, raw=self.raw)
                self.writer.row([*header, "problems"])
            width = len(header)
            values = [csv_io.undo_spreadsheet_safe(c) if not self.raw else c for c in cells]
            values = (values + [""] * width)[:width]
            self.writer.row([*values, f"line {line}: {'; '.join(problems)}"])
        self.pending.clear()


@contextmanager
def _maybe_open(path: Path | None) -> Iterator[TextIO | None]:
    if path is None:
        yield None
        return
    with open(path, "w", encoding="utf-8", newline="") as out:
        yield out


def _run(
    ctx: AppContext,
    path: Path,
    options: ImportOptions,
    seen: dict[str, int],
    *,
    write: bool,
    rejects: Path | None,
    on_bytes: Callable[[int], None] | None,
    on_batch: Callable[[int], None] | None = None,
    checked: bool = False,
) -> ImportReport:
    """One pass over the file. `seen`: each address's first line, filled as rows are read;
    with `checked`, the check pass over the same file filled it already."""
    report = ImportReport(dry_run=options.dry_run, rejects_path=rejects)
    reading = csv_io.Reading()
    batch: list[tuple[Record, Row]] = []
    now = ctx.now()
    with _maybe_open(rejects) as out, open(path, "rb") as binary:
        bad = _Rejects(report, out, options.raw)

        def flush() -> None:
            if batch:
                # Between batches, no transaction open: on PostgreSQL, statistics gathered
                # as the table grows (one catalog query unless stale). Without them the
                # batch's `email IN (…)` queries became scans of every row from ≈85,000
                # rows on (5 s a batch at 100,000; benchmarks/README.md).
                refresh_statistics(ctx.engine, store.TABLE_NAMES)
                _apply_batch(ctx, path, batch, report, bad, options, write=write, now=now)
                batch.clear()
                if on_batch is not None:
                    on_batch(report.rows)
            bad.flush(reading.header)

        text = csv_io.open_text(binary, on_bytes)
        try:
            for record in csv_io.records(
                text, reading, ignore_unknown=options.ignore_unknown_columns, raw=options.raw
            ):
                report.rows += 1
                if record.fields is None:
                    bad.add(record, [record.problem or "unreadable"])
                    continue
                known = _checked_email(record, seen) if checked else ""
                row = csv_io.parse_row(record.line, record.fields, known)
                if row.problems:
                    bad.add(record, row.problems)
                    continue
                first = seen.setdefault(row.email, record.line)
                if first != record.line:
                    bad.add(record, [f"{row.email} repeats line {first}"])
                    continue
                batch.append((record, row))
                if len(batch) >= options.batch_size:
                    flush()
            flush()
            if reading.stopped:
                report.errors.append(reading.stopped)
        except UnicodeDecodeError:
            # Not UTF-8 (a legacy-encoding export): one line says where, not noise per row.
            reading.file_error = csv_io.encoding_problem(path)
    report.file_error = reading.file_error
    report.ignored_columns = reading.ignored_columns
    if rejects is not None and not report.rejected and not report.file_error:
        rejects.unlink(missing_ok=True)  # nothing rejected: no file to look at
        report.rejects_path = None
    return report


def _checked_email(record: Record, seen: dict[str, int]) -> str:
    """The row's address as the check pass normalized it, when this line held it then (else
    ""): email-validator is a sixth of an import's time, and the file is read twice. Only
    the text the check validated on this very line is taken (an address already normalized,
    as most are); any other is validated again."""
    candidate = (record.fields or {}).get("email", "").strip().lower()
    return candidate if seen.get(candidate) == record.line else ""


def _new_row(path: Path, row: Row, now: datetime) -> tuple[dict[str, Any], Change]:
    """A new subscriber's column values and `added` event, with the file's consent times.

    Plain values for a Core executemany, not a `Subscriber`: building the SQLModel object
    (SQLModel's `__init__`, then ≈35 attribute sets through SQLAlchemy's instrumentation and
    pydantic's `__setattr__`) was about half of an import's time, for values read straight
    back out of it. The rules are the same ones: `lifecycle.new_subscriber_values`."""
    consent = Consent(
        given_at=row.optin_time or row.confirm_time or now,
        given_by=ConsentVia.IMPORT,
        source=f"import {path.name} line {row.line}"
        + ("" if row.optin_time or row.confirm_time else " (no opt-in time in the file)"),
        ip=row.optin_ip,
    )
    values, change = lifecycle.new_subscriber_values(
        row.email,
        row.prefs,
        status=row.status,
        now=now,
        consent=consent,
        # The file's own times; an address an admin imports without any was confirmed now
        # (they vouch for it), unless it is pending.
        confirmed_at=row.confirm_time
        or row.optin_time
        or (None if row.status == SubscriberStatus.PENDING else now),
        stopped_by=row.stopped_by,
        stopped_at=row.stop_time,
        suppressed=row.suppressed,
    )
    return values, Change(change.action, {**change.detail, "line": row.line, "via": "import"})


def _apply_batch(
    ctx: AppContext,
    path: Path,
    batch: list[tuple[Record, Row]],
    report: ImportReport,
    bad: _Rejects,
    options: ImportOptions,
    *,
    write: bool,
    now: datetime,
) -> None:
    """Check one batch against the database (one query) and, when writing, write it in its
    own transaction (a few executemany)."""
    scope = session_scope if write and not options.dry_run else read_scope
    with scope(ctx.engine) as session:
        _check_and_write(session, ctx, path, batch, report, bad, options, write, now)


def _check_and_write(
    session: Session,
    ctx: AppContext,
    path: Path,
    batch: list[tuple[Record, Row]],
    report: ImportReport,
    bad: _Rejects,
    options: ImportOptions,
    write: bool,
    now: datetime,
) -> None:
    actor = ctx.actor
    writing = write and not options.dry_run
    existing = store.by_emails(session, [row.email for _, row in batch])
    new_rows: list[dict[str, Any]] = []
    added: dict[str, Change] = {}
    updates: list[dict[str, Any]] = []
    events: list[tuple[int, Change]] = []
    moved: list[tuple[Any, list[Change]]] = []
    for record, row in batch:
        sub = existing.get(row.email)
        if sub is None:
            report.added += 1
            if writing:  # a check pass only counts it (nothing about a new row can fail)
                values, change = _new_row(path, row, now)
                new_rows.append(values)
                added[row.email] = change
            continue
        if not options.update_existing:
            bad.add(record, [f"{row.email} already exists (use --update-existing to update it)"])
            continue
        refused = lifecycle.admin_refusal(sub, row.status)
        if refused is not None:
            bad.add(record, [str(refused)])
            continue
        # A row carries no authors: those the reader follows and mutes stay as they are.
        prefs = replace(row.prefs, **{name: getattr(sub, name) for name in AUTHOR_FIELDS})
        changes = preference_diff(sub, prefs)
        if not changes and row.status == sub.status:
            report.unchanged += 1
            continue
        report.updated += 1
        if changes:
            values = {name: getattr(prefs, name) for name in PREFERENCE_FIELDS}
            values["b_id"] = sub.id
            updates.append(values)
            detail = {"line": row.line, "via": "import", "changes": changes}
            events.append((sub.id, Change(lifecycle.UPDATED, detail)))  # type: ignore[arg-type]
        if row.status != sub.status and writing:
            reason = f"import line {row.line}"
            moved.append((sub, lifecycle.set_by_admin(sub, row.status, now=now, reason=reason)))
    if not writing:
        return
    for sub, steps in moved:  # rare next to preference changes: one ORM update each
        store.save(session, sub, steps, actor=actor, now=now)
    ids = store.insert_many(session, new_rows)
    events.extend((ids[email], change) for email, change in added.items())
    store.update_many(session, updates)
    store.record_many(session, events, actor=actor, now=now)


# ---- export -------------------------------------------------------------------------------


def export(ctx: AppContext, out: TextIO, *, status: str | None = None, raw: bool = False) -> int:
    """Write every subscriber (oldest first) as CSV, streamed in batches in one read
    transaction; cells are spreadsheet-safe unless `raw`. Returns how many."""
    writer = csv_io.Writer(out, raw=raw)
    # Bounced or unsubscribed addresses: the reason, date and way too (a suppression list).
    stops = str(status) in (SubscriberStatus.BOUNCED, SubscriberStatus.UNSUBSCRIBED)
    writer.row([*csv_io.COLUMNS, *(csv_io.STOP_COLUMNS if stops else ())])
    count = 0
    batch = ctx.settings.batch_size if ctx.settings.batch_size > 1 else 1000
    with read_scope(ctx.engine) as session:
        pending: list[Any] = []

        def flush() -> None:
            # One query a batch for the last status change of each (not one a row).
            ids = [s.id for s in pending if s.id is not None]
            last = store.last_status_events(session, ids, lifecycle.STATUS) if stops else {}
            for sub in pending:
                row = csv_io.subscriber_row(sub)
                if stops:
                    event = last.get(sub.id or 0)
                    reason = str((event.detail or {}).get("reason") or "") if event else ""
                    row += csv_io.stop_row(sub, reason)
                writer.row(row)
            pending.clear()

        for sub in store.stream(session, status=status, batch_size=batch):
            pending.append(sub)
            count += 1
            if len(pending) >= batch:
                flush()
        flush()
    return count


def count(ctx: AppContext, status: str | None = None) -> int:
    """How many subscribers an export would write (for a progress bar)."""
    with read_scope(ctx.engine) as session:
        counts = store.count_by_status(session)
    return counts.get(str(status), 0) if status else sum(counts.values())
