"""`digestd entries …`: what ingestion has stored."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from digestd.cli.common import console, fail, get_context, print_json
from digestd.core.db import session_scope
from digestd.core.models import Entry
from digestd.ingest.store import list_entries

app = typer.Typer(help="Inspect stored entries (papers).", no_args_is_help=True)


def parse_since(raw: str) -> datetime:
    """A date (YYYY-MM-DD) or ISO datetime; naive values are read as UTC."""
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        fail(f"--since must be a date like 2026-11-20 or an ISO datetime, got {raw!r}")
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
    source: str | None = typer.Option(None, "--source", help="Only entries seen in source ID."),
    since: str | None = typer.Option(None, "--since", help="Published on/after DATE (UTC)."),
    limit: int = typer.Option(50, "--limit", min=1, max=100000, help="At most this many."),
    as_json: bool = typer.Option(False, "--json", help="Stable JSON output for scripts."),
) -> None:
    """Newest entries first."""
    if source is not None and not source.strip().isdigit():
        fail(f"--source must be a source id (a number), got {source!r}")
    since_at = parse_since(since) if since else None
    app_ctx = get_context(ctx)
    with session_scope(app_ctx.engine) as session:
        source_id = int(source) if source is not None else None
        rows = list_entries(session, source_id=source_id, since=since_at, limit=limit)
        data = [entry_dict(e) for e in rows]
    if as_json:
        print_json(data)
        return
    if not data:
        console.print("no entries")
        return
    table = Table()
    for column in ("id", "published", "title", "authors", "categories", "up", "key"):
        table.add_column(column, overflow="fold")
    for row in data:
        authors = row["authors"]
        shown = ", ".join(authors[:3]) + (" et al." if len(authors) > 3 else "")
        table.add_row(
            str(row["id"]),
            row["published_at"][:10],
            escape(row["title"]),
            escape(shown),
            escape(", ".join(row["categories"][:4])),
            str(row["upvotes"]),
            escape(row["canonical_key"]),
        )
    console.print(table)
