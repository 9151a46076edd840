"""`digestd sources …`."""

from __future__ import annotations

import typer

app = typer.Typer(help="sources (not built yet).", no_args_is_help=True)
