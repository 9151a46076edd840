"""`digestd deliveries …`."""

from __future__ import annotations

import typer

app = typer.Typer(help="deliveries (not built yet).", no_args_is_help=True)
