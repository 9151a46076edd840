"""`digestd config show`: the settings in force, secrets masked."""

from __future__ import annotations

import typer

from digestd.cli.common import get_context, print_json
from digestd.cli.groups import Group
from digestd.cli.tables import Column, print_table
from digestd.core.config import PARSERS

app = typer.Typer(cls=Group, help="Settings (DIGESTD_* variables and .env).", no_args_is_help=True)


@app.command("show")
def show_cmd(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print the settings as JSON."),
    wide: bool = typer.Option(False, "--wide", help="Each setting on one line, nothing wrapped."),
) -> None:
    """Show every setting in force (environment over .env over defaults); secrets masked."""
    values = get_context(ctx, migrate=False).settings.redacted()
    if as_json:
        print_json(values)
        return
    rows = []
    for var, (name, _parse) in PARSERS.items():
        value = values.get(name)
        rows.append([var, "" if value is None else str(value)])
    columns = [Column("variable", keep=True), Column("value", keep=True, wrap=True)]
    print_table(columns, rows, wide=wide)
