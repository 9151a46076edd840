"""`digestd subscribers …`."""

from __future__ import annotations

import typer

app = typer.Typer(help="subscribers (not built yet).", no_args_is_help=True)
