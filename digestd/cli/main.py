"""Entry point of the `digestd` command: registers every command group."""

from __future__ import annotations

import typer

from digestd import __version__
from digestd.cli import db, deliveries, demo, entries, preview, run, sources, subscribers, web

app = typer.Typer(
    name="digestd",
    help="Personalized email digests of trending research papers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db.app, name="db")
app.add_typer(subscribers.app, name="subscribers")
app.add_typer(sources.app, name="sources")
app.add_typer(entries.app, name="entries")
app.add_typer(deliveries.app, name="deliveries")
preview.register(app)
run.register(app)
web.register(app)
demo.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"digestd {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Personalized email digests of trending research papers."""


def main() -> None:
    """Console-script entry point."""
    app()
