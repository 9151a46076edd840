"""Entry point of the `digestd` command: registers every command group."""

from __future__ import annotations

import sys

import typer

try:
    # Typer vendors its own copy of Click; its exceptions are not `click.*` ones.
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover - older Typer uses Click itself
    from click import exceptions as click_exc  # type: ignore[no-redef]  # same module, older Typer

from digestd import __version__
from digestd.cli import (
    db,
    deliveries,
    demo,
    dkim,
    doctor,
    entries,
    inbound,
    preview,
    run,
    settings,
    sources,
    stats,
    subscribers,
    web,
)
from digestd.cli.common import EX_USAGE
from digestd.cli.groups import Group

app = typer.Typer(
    cls=Group,
    name="digestd",
    help="Personalized email digests of trending research papers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db.app, name="db")
app.add_typer(settings.app, name="config")
app.add_typer(subscribers.app, name="subscribers")
app.add_typer(sources.app, name="sources")
app.add_typer(entries.app, name="entries")
app.add_typer(deliveries.app, name="deliveries")
app.add_typer(inbound.app, name="inbound")
app.add_typer(dkim.app, name="dkim")
preview.register(app)
stats.register(app)
run.register(app)
web.register(app)
demo.register(app)
doctor.register(app)


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
    """Console-script entry point: usage errors are one line and exit 2; a problem found is
    1, the relay or database down 75 (README "Exit codes")."""
    try:
        code = app(standalone_mode=False)
    except click_exc.NoArgsIsHelpError as exc:
        # `digestd subscribers` alone: show that group's help, as a user would expect.
        exc.show()
        code = 0
    except click_exc.UsageError as exc:
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        message = " ".join(exc.format_message().split())
        print(f"error: {message}{where}", file=sys.stderr)
        code = EX_USAGE
    except click_exc.ClickException as exc:
        print(f"error: {' '.join(exc.format_message().split())}", file=sys.stderr)
        code = 1
    except typer.Abort:
        print("aborted", file=sys.stderr)
        code = 1
    sys.exit(code if isinstance(code, int) else 0)
