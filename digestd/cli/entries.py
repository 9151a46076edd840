"""`digestd entries …`: what ingestion has stored."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer

from digestd.cli.common import console, get_context, print_json, usage
from digestd.cli.groups import Group
from digestd.cli.tables import Column, print_table
from digestd.core.db import session_scope
from digestd.core.models import Entry
from digestd.ingest.store import list_entries

app = typer.Typer(cls=Group, help="Inspect stored entries (papers).", no_args_is_help=True)


def parse_since(raw: str) -> datetime:
    """A date (YYYY-MM-DD) or ISO datetime; naive values are read as UTC."""
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        usage(f"--since must be a date like 2026-11-20 or an ISO datetime, got {raw!r}")
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def entry_dict(entry: Entry) -> dict[str, Any]:
    """An entry as plain data (for --json)."""
    return {
        "id": entry.id,
        "canonical_key": entry.canonical_key,
        "version": entry.version,
        "title": entry.title,
        "authors": list(entry.authors),
        "categories": list(entry.categories),
        "keywords": list(entry.keywords),
        "url": entry.url,
        "pdf_url": entry.pdf_url,
        "code_url": entry.code_url,
        "summary": entry.summary,
        "published_at": entry.published_at.isoformat(),
        "ingested_at": entry.ingested_at.isoformat(),
        "updated_at": entry.updated_at.isoformat() if entry.updated_at else None,
        "upvotes": entry.upvotes,
        "comments": entry.comments,
        "source_id": entry.source_id,
    }


@app.command("list")
def list_(
    ctx: typer.Context,
    source: int | None = typer.Option(
        None, "--source", metavar="ID", min=1, help="Only entries seen in source ID."
    ),
    since: str | None = typer.Option(
        None, "--since", metavar="DATE", help="Published on/after DATE (UTC)."
    ),
    limit: int = typer.Option(50, "--limit", min=1, max=100000, help="At most this many."),
    wide: bool = typer.Option(False, "--wide", help="Authors and categories too, one line each."),
    as_json: bool = typer.Option(False, "--json", help="Stable JSON output for scripts."),
) -> None:
    """Newest entries first."""
    since_at = parse_since(since) if since else None
    app_ctx = get_context(ctx)
    with session_scope(app_ctx.engine) as session:
        rows = list_entries(session, source_id=source, since=since_at, limit=limit)
        data = [entry_dict(e) for e in rows]
    if as_json:
        print_json(data)
        return
    if not data:
        console.print("no entries")
        return
    columns = [
        Column("id", keep=True, right=True),
        Column("published", priority=3),
        Column("key", priority=2),
        Column("up", priority=1, right=True),
    ]
    if wide:
        columns += [Column("categories"), Column("authors"), Column("title")]
    else:
        columns.append(Column("title", keep=True, wrap=True))
    table = []
    for row in data:
        authors = row["authors"]
        shown = ", ".join(authors[:3]) + (" et al." if len(authors) > 3 else "")
        cells = [
            str(row["id"]),
            row["published_at"][:10],
            row["canonical_key"],
            str(row["upvotes"]),
        ]
        if wide:
            cells += [", ".join(row["categories"][:4]), shown]
        table.append([*cells, row["title"]])
    print_table(columns, table, wide=wide)
