"""`digestd sources …`: add, list (health at a glance), remove and fetch feeds."""

from __future__ import annotations

import asyncio
import textwrap
from datetime import datetime, timedelta
from typing import Any

import typer
from rich.markup import escape
from rich.progress import MofNCompleteColumn, TextColumn
from rich.text import Text

from digestd.cli.common import (
    console,
    fail,
    get_context,
    print_json,
    short_time,
    usage,
)
from digestd.cli.groups import Group
from digestd.cli.progress import QuietOpt, progress_bar
from digestd.cli.tables import Column, print_table, say, width
from digestd.core.db import session_scope
from digestd.core.models import SOURCE_KINDS, Source
from digestd.ingest import sources as source_service
from digestd.ingest.sources import (
    InvalidSource,
    add_source,
    get_sources,
    list_sources,
    remove_source,
    set_allow_private,
)
from digestd.ingest.store import seen_per_source
from digestd.ingest.types import FetchReport

RECENT_DAYS = 7  # `sources list`: entries each source brought in over this many days

app = typer.Typer(cls=Group, help="Manage feed sources and fetch them.", no_args_is_help=True)

JsonOpt = typer.Option(False, "--json", help="Stable JSON output (sorted keys) for scripts.")


def _short(iso: str | None) -> str:
    return short_time(datetime.fromisoformat(iso) if iso else None)


# A source's id: a number (a typo is the parser's usage error, exit 2, naming the value).
IdArg = typer.Argument(..., metavar="ID", help="The source's id (sources list).")


def source_dict(source: Source, recent: int | None = None) -> dict[str, Any]:
    """A source and its health as plain data (for --json). `format` is what the last parse
    detected (null before one), `kind` what was asked (`auto`: detect)."""
    return {
        "id": source.id,
        "url": source.url,
        "name": source.name,
        "kind": source.kind,
        "format": source.format,
        "enabled": source.enabled,
        "interval_minutes": source.interval_minutes,
        "last_success_at": source.last_success_at.isoformat() if source.last_success_at else None,
        f"entries_{RECENT_DAYS}d": recent or 0,
        "last_status": source.last_status,
        "last_error": source.last_error,
        "last_fetch_at": source.last_fetch_at.isoformat() if source.last_fetch_at else None,
        "last_duration_ms": source.last_duration_ms,
        "last_counts": dict(source.last_counts or {}),
        "failures": source.failures,
        "next_fetch_at": source.next_fetch_at.isoformat() if source.next_fetch_at else None,
        "allow_private": source.allow_private,
    }


@app.command("add")
def add(
    ctx: typer.Context,
    location: str = typer.Argument(..., metavar="URL_OR_PATH", help="Feed URL or local file."),
    name: str = typer.Option("", "--name", help="Display name (default: from the URL)."),
    kind: str = typer.Option(
        "auto", "--kind", help=f"Force the format: {', '.join(SOURCE_KINDS)} (default: detect)."
    ),
    allow_private: bool = typer.Option(
        False,
        "--allow-private",
        help="Let it (and its redirects) reach this machine or a private network"
        " (default: public addresses only; a local path always reads this machine).",
    ),
) -> None:
    """Add a feed; it is fetched by the next `sources fetch` or daemon run."""
    app_ctx = get_context(ctx)
    try:
        with session_scope(app_ctx.engine) as session:
            source = add_source(
                session,
                location,
                now=app_ctx.now(),
                name=name,
                kind=kind,
                allow_private=allow_private,
            )
            sid, url, k, private = source.id, source.url, source.kind, source.allow_private
    except InvalidSource as exc:
        fail(str(exc))
    reach = _reach(url, private)
    say(f"added source #{sid}: {url} (kind {k}; {reach})")


def _reach(url: str, allow_private: bool) -> str:
    """Where a source may go, in the words `add` and `set` print."""
    if url.startswith("file:"):
        return "a local file on this machine"
    if allow_private:
        return "may reach this machine and private networks"
    return "public addresses only"


@app.command("set")
def set_(
    ctx: typer.Context,
    source_id: int = IdArg,
    allow_private: bool | None = typer.Option(
        None,
        "--allow-private/--public-only",
        help="Let the source (and its redirects) reach this machine or a private network,"
        " or only public addresses.",
    ),
    interval: int | None = typer.Option(
        None,
        "--interval",
        metavar="MINUTES",
        help="Fetch it every MINUTES (5 to 10080; 0: back to DIGESTD_FETCH_INTERVAL_MINUTES).",
    ),
) -> None:
    """Change a source's settings: where it may connect, how often it is fetched."""
    if allow_private is None and interval is None:
        usage("nothing to change: give --interval MINUTES, --allow-private or --public-only")
    app_ctx = get_context(ctx)
    said = []
    try:
        with session_scope(app_ctx.engine) as session:
            if allow_private is not None:
                source = set_allow_private(session, source_id, allow_private)
                said.append(_reach(source.url, source.allow_private))
            if interval is not None:
                source = source_service.set_interval(
                    session, source_id, interval or None, now=app_ctx.now()
                )
                every = app_ctx.settings.fetch_interval_minutes
                said.append(
                    f"fetched every {source.interval_minutes} minutes"
                    if source.interval_minutes
                    else f"fetched every {every} minutes (the default)"
                )
            url = source.url
    except InvalidSource as exc:
        fail(str(exc))
    say(f"source #{source_id}: {url} ({'; '.join(said)})")


@app.command("disable")
def disable(ctx: typer.Context, source_id: int = IdArg) -> None:
    """Stop fetching a source; its entries stay (and keep being mailed)."""
    _set_enabled(ctx, source_id, False)


@app.command("enable")
def enable(ctx: typer.Context, source_id: int = IdArg) -> None:
    """Fetch a disabled source again (due at once)."""
    _set_enabled(ctx, source_id, True)


def _set_enabled(ctx: typer.Context, source_id: int, enabled: bool) -> None:
    app_ctx = get_context(ctx)
    try:
        with session_scope(app_ctx.engine) as session:
            source = source_service.set_enabled(session, source_id, enabled, now=app_ctx.now())
            name = source.name
    except InvalidSource as exc:
        fail(str(exc))
    what = "enabled (fetched at the next run)" if enabled else "disabled (not fetched)"
    say(f"source #{source_id} {name}: {what}")


@app.command("rename")
def rename(
    ctx: typer.Context,
    source_id: int = IdArg,
    name: str = typer.Argument(..., metavar="NAME", help="The new display name."),
) -> None:
    """Give a source a display name (shown in lists and stats)."""
    app_ctx = get_context(ctx)
    try:
        with session_scope(app_ctx.engine) as session:
            source = source_service.rename(session, source_id, name)
            shown = source.name
    except InvalidSource as exc:
        fail(str(exc))
    say(f"source #{source_id} is now {shown}")


@app.command("list")
def list_(
    ctx: typer.Context,
    as_json: bool = JsonOpt,
    wide: bool = typer.Option(False, "--wide", help="Every column, the URL and whole errors."),
) -> None:
    """Every source with its health: status, format, entries of the last 7 days, last
    success, next fetch, last error."""
    app_ctx = get_context(ctx)
    with session_scope(app_ctx.engine) as session:
        recent = seen_per_source(session, app_ctx.now() - timedelta(days=RECENT_DAYS))
        rows = [source_dict(s, recent.get(s.id or 0)) for s in list_sources(session)]
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no sources yet: add one with `digestd sources add URL`")
        return
    columns = [
        Column("id", keep=True, right=True),
        Column("status", keep=True),
        Column("format", priority=3),
        Column(f"{RECENT_DAYS}d", priority=4, right=True),
        Column("last ok", priority=2),
        Column("next fetch", priority=1),
        Column("fails", priority=0, right=True),
    ]
    if wide:
        columns += [Column("name"), Column("url"), Column("last error")]
    else:
        columns.append(Column("name", keep=True, wrap=True))
    table = []
    for row in rows:
        values = [
            str(row["id"]),
            _status(row),
            row["format"] or "-",
            str(row[f"entries_{RECENT_DAYS}d"]),
            _short(row["last_success_at"]),
            _short(row["next_fetch_at"]) if row["enabled"] else "-",
            str(row["failures"]),
            row["name"],
        ]
        if wide:
            values += [row["url"], row["last_error"] or ""]
        table.append(values)
    print_table(columns, table, wide=wide)
    errors = [r for r in rows if r["last_error"]]
    if errors and not wide:
        console.print("last errors:", style="bold", highlight=False)
        room = max(40, width() - 2)
        for r in errors:
            text = f"#{r['id']} {r['last_error']}"
            lines = textwrap.wrap(text, room, break_long_words=False, break_on_hyphens=False)
            console.print(
                Text("\n".join("  " + line for line in lines)), highlight=False, crop=False
            )


def _status(row: dict[str, Any]) -> str:
    """ok, partial, error, not_modified, never fetched; `disabled` for a disabled source."""
    if not row["enabled"]:
        return "disabled"
    return row["last_status"] or "never fetched"


@app.command("remove")
def remove(ctx: typer.Context, source_id: int = IdArg) -> None:
    """Remove a source; entries already stored stay (they may have been mailed)."""
    app_ctx = get_context(ctx)
    try:
        with session_scope(app_ctx.engine) as session:
            source = remove_source(session, source_id)
            url = source.url
    except InvalidSource as exc:
        fail(str(exc))
    say(f"removed source #{source_id}: {url}")


@app.command("fetch")
def fetch(
    ctx: typer.Context,
    source_ids: list[int] = typer.Argument(None, metavar="ID", help="Default: all enabled."),
    as_json: bool = JsonOpt,
    wide: bool = typer.Option(False, "--wide", help="Every column on one line a source."),
    quiet: bool = QuietOpt,
) -> None:
    """Fetch sources now and print per-source counts; a failing feed is reported, not fatal."""
    from digestd.ingest.run import fetch_sources

    app_ctx = get_context(ctx)
    ids = list(source_ids or [])
    if ids:
        try:
            with session_scope(app_ctx.engine) as session:
                get_sources(session, ids)  # unknown ids: one line, exit 1, nothing fetched
        except InvalidSource as exc:
            fail(str(exc))

    progress = progress_bar(
        "fetching", MofNCompleteColumn(), TextColumn("{task.description}"), quiet=quiet
    )
    task = progress.add_task("", total=None)

    def advance(done: int, total: int, report: FetchReport) -> None:
        progress.update(task, completed=done, total=total, description=escape(report.name))

    with progress:
        reports = asyncio.run(fetch_sources(app_ctx, ids or None, progress=advance))
    if as_json:
        print_json([_report_dict(r) for r in reports])
    else:
        _print_reports(reports, wide)
    failed = [r for r in reports if r.failed]
    if failed and not as_json:
        names = ", ".join(f"#{r.source_id}" for r in failed)
        say(
            f"{len(failed)} of {len(reports)} source(s) failed ({names}); "
            "they will be retried with backoff (see `digestd sources list`)",
            err=True,
            style="yellow",
        )


def _report_dict(report: FetchReport) -> dict[str, Any]:
    return {
        "source_id": report.source_id,
        "name": report.name,
        "status": report.status,
        "kind": report.kind,
        "new": report.new,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "rejected": report.rejected,
        "duration_ms": report.duration_ms,
        "error": report.error,
        "note": report.note,
        "next_fetch_at": report.next_fetch_at.isoformat() if report.next_fetch_at else None,
    }


def _print_reports(reports: list[FetchReport], wide: bool = False) -> None:
    if not reports:
        console.print("no sources to fetch: add one with `digestd sources add URL`")
        return
    columns = [
        Column("id", keep=True, right=True),
        Column("status", keep=True),
        Column("new", keep=True, right=True),
        Column("upd", priority=3, right=True),
        Column("same", priority=2, right=True),
        Column("rej", priority=4, right=True),
        Column("ms", priority=1, right=True),
        Column("name", keep=True, wrap=not wide),
    ]
    rows = [
        [
            str(r.source_id),
            r.status,
            str(r.new),
            str(r.updated),
            str(r.unchanged),
            str(r.rejected),
            str(r.duration_ms),
            r.name,
        ]
        for r in reports
    ]
    print_table(columns, rows, wide=wide)
    notes = [r for r in reports if r.error or r.note]
    if notes:
        room = max(40, width() - 2)
        for r in notes:
            text = f"#{r.source_id} {r.error or r.note}"
            lines = textwrap.wrap(text, room, break_long_words=False, break_on_hyphens=False)
            console.print(
                Text("\n".join("  " + line for line in lines)), highlight=False, crop=False
            )
