"""`digestd sources …`: add, list (health at a glance), remove and fetch feeds."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import typer
from rich.markup import escape
from rich.progress import MofNCompleteColumn, TextColumn
from rich.table import Table

from digestd.cli.common import console, err_console, fail, get_context, print_json, short_time
from digestd.cli.progress import QuietOpt, progress_bar
from digestd.core.db import session_scope
from digestd.core.models import SOURCE_KINDS, Source
from digestd.ingest.sources import (
    InvalidSource,
    add_source,
    get_sources,
    list_sources,
    remove_source,
    set_allow_private,
)
from digestd.ingest.types import FetchReport

app = typer.Typer(help="Manage feed sources and fetch them.", no_args_is_help=True)

JsonOpt = typer.Option(False, "--json", help="Stable JSON output (sorted keys) for scripts.")


def _short(iso: str | None) -> str:
    return short_time(datetime.fromisoformat(iso) if iso else None)


def _source_id(raw: str) -> int:
    # Ids arrive as text so a typo gives one line and exit 1, not click's usage error.
    if not raw.strip().isdigit():
        fail(f"source id must be a number, got {raw!r}")
    return int(raw)


def source_dict(source: Source) -> dict[str, Any]:
    """A source and its health as plain data (for --json)."""
    return {
        "id": source.id,
        "url": source.url,
        "name": source.name,
        "kind": source.kind,
        "enabled": source.enabled,
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
    console.print(
        f"added source #{sid}: {escape(url)} (kind {k}; {reach})", highlight=False, soft_wrap=True
    )


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
    raw_id: str = typer.Argument(..., metavar="ID"),
    allow_private: bool | None = typer.Option(
        None,
        "--allow-private/--public-only",
        help="Let the source (and its redirects) reach this machine or a private network,"
        " or only public addresses.",
    ),
) -> None:
    """Change a source's settings: where it may connect."""
    source_id = _source_id(raw_id)
    if allow_private is None:
        fail("nothing to change: give --allow-private or --public-only")
    app_ctx = get_context(ctx)
    try:
        with session_scope(app_ctx.engine) as session:
            source = set_allow_private(session, source_id, allow_private)
            url, private = source.url, source.allow_private
    except InvalidSource as exc:
        fail(str(exc))
    reach = _reach(url, private)
    console.print(f"source #{source_id}: {escape(url)} ({reach})", highlight=False, soft_wrap=True)


@app.command("list")
def list_(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """Every source with its health: status, last fetch, counts, failures, next fetch."""
    app_ctx = get_context(ctx)
    with session_scope(app_ctx.engine) as session:
        rows = [source_dict(s) for s in list_sources(session)]
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no sources yet: add one with `digestd sources add URL`")
        return
    table = Table(show_lines=False)
    for column in ("id", "name", "kind", "status", "last fetch", "new/upd/same/rej", "fails",
                   "next fetch", "error"):  # fmt: skip
        table.add_column(column, overflow="fold")
    for row in rows:
        counts = row["last_counts"]
        status = row["last_status"] or "never fetched"
        style = {"error": "red", "partial": "yellow"}.get(status, "")
        table.add_row(
            str(row["id"]),
            escape(row["name"]),
            row["kind"],
            f"[{style}]{status}[/{style}]" if style else status,
            _short(row["last_fetch_at"]),
            "/".join(str(counts.get(k, 0)) for k in ("new", "updated", "unchanged", "rejected")),
            str(row["failures"]),
            _short(row["next_fetch_at"]),
            escape((row["last_error"] or "")[:120]),
        )
    console.print(table)


@app.command("remove")
def remove(ctx: typer.Context, raw_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Remove a source; entries already stored stay (they may have been mailed)."""
    source_id = _source_id(raw_id)
    app_ctx = get_context(ctx)
    try:
        with session_scope(app_ctx.engine) as session:
            source = remove_source(session, source_id)
            url = source.url
    except InvalidSource as exc:
        fail(str(exc))
    console.print(f"removed source #{source_id}: {escape(url)}", highlight=False, soft_wrap=True)


@app.command("fetch")
def fetch(
    ctx: typer.Context,
    source_ids: list[str] = typer.Argument(None, metavar="[ID]...", help="Default: all enabled."),
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Fetch sources now and print per-source counts; a failing feed is reported, not fatal."""
    from digestd.ingest.run import fetch_sources

    app_ctx = get_context(ctx)
    ids = [_source_id(raw) for raw in source_ids or []]
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
        _print_reports(reports)
    failed = [r for r in reports if r.failed]
    if failed and not as_json:
        names = ", ".join(f"#{r.source_id}" for r in failed)
        err_console.print(
            f"[yellow]{len(failed)} of {len(reports)} source(s) failed ({names}); "
            "they will be retried with backoff (see `digestd sources list`)[/yellow]",
            highlight=False,
            soft_wrap=True,
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


def _print_reports(reports: list[FetchReport]) -> None:
    if not reports:
        console.print("no sources to fetch: add one with `digestd sources add URL`")
        return
    table = Table()
    for column in ("id", "name", "status", "new", "updated", "unchanged", "rejected", "ms",
                   "note"):  # fmt: skip
        table.add_column(column, overflow="fold")
    for r in reports:
        style = {"error": "red", "partial": "yellow"}.get(r.status, "green")
        table.add_row(
            str(r.source_id),
            escape(r.name),
            f"[{style}]{r.status}[/{style}]",
            str(r.new),
            str(r.updated),
            str(r.unchanged),
            str(r.rejected),
            str(r.duration_ms),
            escape((r.error or r.note or "")[:160]),
        )
    console.print(table)
