"""Shared pieces of every CLI command: the context, one-line errors, output helpers."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any, NoReturn

import typer
from rich.console import Console
from sqlmodel import Session

from digestd.core.config import ConfigError, load_settings
from digestd.core.context import AppContext
from digestd.core.db import redact_url
from digestd.core.logs import configure_logging
from digestd.core.models import Subscriber
from digestd.core.statuses import SubscriberStatus, parse_subscriber_status
from digestd.subscribers.preferences import InvalidInput
from digestd.subscribers.queries import by_email

console = Console()
err_console = Console(stderr=True)


# Exit codes, one table for every command (README "Exit codes"): 0 ok; 1 a problem found
# (bad input, a refused change, a failed check); 2 usage (the command line itself is wrong);
# 75 temporary (EX_TEMPFAIL: the relay or the database is down; try again later).
EX_OK = 0
EX_PROBLEM = 1
EX_USAGE = 2
EX_TEMPFAIL = 75


def fail(message: str, code: int = EX_PROBLEM) -> NoReturn:
    """Print one clear line to stderr and exit with `code` (no traceback)."""
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def usage(message: str) -> NoReturn:
    """The command line itself is wrong (a malformed id, options that exclude each other):
    one line, exit 2, like the parser's own usage errors."""
    fail(message, EX_USAGE)


def status_option(status: str | None) -> SubscriberStatus | None:
    """A --status option as a known subscriber status (None: all), or one line and exit 2."""
    if status is None:
        return None
    try:
        return parse_subscriber_status(status)
    except ValueError as exc:
        usage(f"--{exc}")


def temporary(exc: BaseException) -> bool:
    """Whether an exception means the database (or a server) is down for now, so trying
    again later may work: exit 75 rather than 1."""
    from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

    if not isinstance(
        exc, OperationalError | InterfaceError | DisconnectionError | ConnectionError
    ):
        return False
    if type(getattr(exc, "orig", None)).__module__.startswith("sqlite3"):
        # A file, not a server: only a lock held by another process passes with time
        # (a missing directory or a read-only file does not).
        return any(word in str(exc).lower() for word in ("locked", "busy"))
    return True


def get_context(
    ctx: typer.Context, *, migrate: bool = True, actor: str | None = None
) -> AppContext:
    """The AppContext for this invocation; settings are loaded and validated here."""
    root = ctx.find_root()
    if root.obj is None:
        try:
            settings = load_settings()
        except ConfigError as exc:
            fail(str(exc))
        configure_logging(settings)
        made = AppContext(settings=settings, actor=actor or f"cli:{ctx.command_path}")
        ctx.call_on_close(made.dispose)
        root.obj = made
    app: AppContext = root.obj
    if actor:
        app.actor = actor
    elif ctx.command_path:
        app.actor = f"cli:{ctx.command_path.removeprefix('digestd ').strip()}"
    if migrate and not app.migrated:
        try:
            app.migrate()
        except Exception as exc:  # a database that cannot be reached (75) or opened (1)
            code = EX_TEMPFAIL if temporary(exc) else EX_PROBLEM
            fail(f"database {redact_url(app.settings.database_url)}: {first_line(exc)}", code)
    return app


def find_subscriber(session: Session, email: str) -> Subscriber:
    """The subscriber with this address, or one line and exit 1 (bad address or unknown)."""
    try:
        sub = by_email(session, email)
    except InvalidInput as exc:
        fail(str(exc))
    if sub is None:
        fail(f"no subscriber {email.strip()!r}")
    return sub


def short_time(value: datetime | None) -> str:
    """A timestamp for tables, to the minute; "-" for none."""
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (drivers add multi-line detail)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def print_json_stream(items: Iterable[Any]) -> None:
    """A JSON array written item by item (same text as `print_json` of the list), so a long
    list is never held in memory whole."""
    out = sys.stdout
    out.write("[")
    first = True
    for item in items:
        text = json.dumps(item, sort_keys=True, default=_json_default, ensure_ascii=False, indent=2)
        out.write(("\n" if first else ",\n") + textwrap.indent(text, "  "))
        first = False
    out.write("]\n" if first else "\n]\n")


def print_json(data: Any) -> None:
    """Stable JSON for scripts: sorted keys, ISO timestamps, one document on stdout."""
    sys.stdout.write(
        json.dumps(data, sort_keys=True, default=_json_default, ensure_ascii=False, indent=2)
    )
    sys.stdout.write("\n")
