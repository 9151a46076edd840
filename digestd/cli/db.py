"""`digestd db …`: schema migrations."""

from __future__ import annotations

import typer

from digestd.cli.common import console, get_context
from digestd.cli.groups import Group
from digestd.core.db import current_revision

app = typer.Typer(cls=Group, help="Database schema (Alembic migrations).", no_args_is_help=True)


@app.command("upgrade")
def upgrade_cmd(ctx: typer.Context) -> None:
    """Apply every pending migration (safe to run again)."""
    context = get_context(ctx)
    console.print(f"database at revision {current_revision(context.engine)}")


@app.command("current")
def current_cmd(ctx: typer.Context) -> None:
    """Show the schema revision without changing anything."""
    context = get_context(ctx, migrate=False)
    console.print(current_revision(context.engine) or "empty (no migrations applied)")
