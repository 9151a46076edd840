"""`digestd subscribers …`: the admins' daily tool for people and their preferences."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from digestd.cli import library, subscriber_show, subscribers_csv
from digestd.cli.common import (
    console,
    fail,
    get_context,
    print_json_stream,
    status_option,
    usage,
)
from digestd.cli.groups import Group
from digestd.cli.tables import Column, print_table
from digestd.core.statuses import Move, SubscriberStatus
from digestd.subscribers import listing, manage, signup
from digestd.subscribers.manage import ByEmail
from digestd.subscribers.preferences import InvalidInput
from digestd.subscribers.votes import parse_refs

app = typer.Typer(cls=Group, help="Manage subscribers and their preferences.", no_args_is_help=True)

# Options shared by `add` and `update`. Values arrive as text and are validated by the
# service, so a bad value gives one line and exit 1 (not click's multi-line usage error).
NameOpt = typer.Option(None, "--name", help="Display name.")
TopicsOpt = typer.Option(
    None, "--topics", help='Topics to match, e.g. \'"KV cache" retrieval -survey\' ("" clears).'
)
CategoriesOpt = typer.Option(
    None, "--categories", help='Comma-separated categories, e.g. cs.CL,cs.LG ("" clears).'
)
AuthorsOpt = typer.Option(
    None,
    "--authors",
    help='Authors to follow, ";"-separated, e.g. "Yann LeCun; Percy Liang": their new papers '
    'lead every digest ("" clears).',
)
MuteAuthorsOpt = typer.Option(
    None,
    "--mute-authors",
    help='Authors whose papers never appear, ";"-separated ("" clears).',
)
FrequencyOpt = typer.Option(None, "--frequency", help="daily or weekly.")
HourOpt = typer.Option(None, "--hour", metavar="<int>", help="Local hour to send, 0-23.")
WeekdayOpt = typer.Option(None, "--weekday", help="Day for weekly digests: mon..sun.")
TimezoneOpt = typer.Option(None, "--timezone", help="IANA time zone, e.g. Europe/Berlin.")
MaxItemsOpt = typer.Option(None, "--max-items", metavar="<int>", help="Papers per digest, 1-100.")
FormatOpt = typer.Option(None, "--format", help="html or text.")
JsonOpt = typer.Option(False, "--json", help="Stable JSON output (sorted keys) for scripts.")


def _changes(**given: Any) -> dict[str, Any]:
    """The preference fields that were given on the command line (None means not given)."""
    return {name: value for name, value in given.items() if value is not None}


@app.command("add")
def add_cmd(
    ctx: typer.Context,
    email: str = typer.Argument(..., help="The address to subscribe."),
    name: str | None = NameOpt,
    topics: str | None = TopicsOpt,
    categories: str | None = CategoriesOpt,
    frequency: str | None = FrequencyOpt,
    hour: str | None = HourOpt,
    weekday: str | None = WeekdayOpt,
    timezone: str | None = TimezoneOpt,
    max_items: str | None = MaxItemsOpt,
    fmt: str | None = FormatOpt,
    confirmed: bool = typer.Option(
        False,
        "--confirmed",
        help="The person has already agreed: make them active now (needed to re-add an "
        "unsubscribed address).",
    ),
) -> None:
    """Subscribe an address (pending until confirmed, or active with --confirmed)."""
    app_ctx = get_context(ctx)
    changes = _changes(
        name=name,
        topics=topics,
        categories=categories,
        frequency=frequency,
        send_hour=hour,
        send_weekday=weekday,
        timezone=timezone,
        max_items=max_items,
        format=fmt,
    )
    try:
        verb, result = signup.add_by_admin(app_ctx, email, changes, confirmed=confirmed)
    except InvalidInput as exc:
        fail(str(exc))
    console.print(
        f"{verb} {escape(result['email'])} (id {result['id']}, status {result['status']})",
        highlight=False,
    )


PAGE = 50  # rows per page of `list` (a table); --json pages through everything


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    status: str | None = typer.Option(
        None, "--status", help=f"Only this status: {', '.join(SubscriberStatus)}."
    ),
    search: str | None = typer.Option(
        None, "--search", help="Only addresses or names containing TEXT (any case)."
    ),
    limit: int | None = typer.Option(
        None,
        "--limit",
        min=1,
        max=100000,
        help=f"Rows per page (table: {PAGE}; --json: everything).",
    ),
    after: int = typer.Option(
        0, "--after", min=0, help="Start after this subscriber id (the next page)."
    ),
    wide: bool = typer.Option(False, "--wide", help="Every column, one line a subscriber."),
    as_json: bool = JsonOpt,
) -> None:
    """List subscribers, oldest first, a page at a time (--search to find someone)."""
    wanted = status_option(status)
    text = search.strip() if search else None
    app_ctx = get_context(ctx)
    if as_json:
        print_json_stream(
            listing.every(app_ctx, search=text, status=wanted, after=after, limit=limit)
        )
        return
    found = listing.page(app_ctx, search=text, status=wanted, after=after, limit=limit or PAGE)
    rows, matching, before = found.rows, found.matching, found.before
    print_table(*_subscriber_table(rows), wide=wide)
    what = f"{matching:,} subscriber{'s' if matching != 1 else ''}"
    if text:
        what += f" matching {text!r}"
    if not rows:
        console.print(f"no rows to show ({what})", highlight=False)
        return
    console.print(f"{before + 1:,}-{before + len(rows):,} of {escape(what)}", highlight=False)
    if before + len(rows) < matching:
        more = f"digestd subscribers list --after {rows[-1]['id']}"
        if text:
            more += f" --search {shlex.quote(text)}"
        if wanted:
            more += f" --status {wanted}"
        if limit:
            more += f" --limit {limit}"
        console.print(f"next page: {escape(more)}", highlight=False, soft_wrap=True)


def _subscriber_table(rows: list[dict[str, Any]]) -> tuple[list[Column], list[list[str]]]:
    """Subscribers at 80 columns: ids, statuses and addresses whole (the id is what
    `--after` needs); the schedule and time zone give way first, the name wraps last."""
    columns = [
        Column("id", keep=True, right=True),
        Column("email", keep=True),
        Column("status", keep=True),
        Column("schedule", priority=2),
        Column("timezone", priority=1),
        Column("name", wrap=True, priority=3),
    ]
    cells = []
    for s in rows:
        day = f" {s['send_weekday']}" if s["frequency"] == "weekly" else ""
        cells.append(
            [
                str(s["id"]),
                s["email"],
                s["status"],
                f"{s['frequency']}{day} {s['send_hour']:02d}:00",
                s["timezone"],
                s["name"],
            ]
        )
    return columns, cells


@app.command("update")
def update_cmd(
    ctx: typer.Context,
    email: str = typer.Argument(..., help="The subscriber's address."),
    name: str | None = NameOpt,
    topics: str | None = TopicsOpt,
    categories: str | None = CategoriesOpt,
    frequency: str | None = FrequencyOpt,
    hour: str | None = HourOpt,
    weekday: str | None = WeekdayOpt,
    timezone: str | None = TimezoneOpt,
    max_items: str | None = MaxItemsOpt,
    fmt: str | None = FormatOpt,
    follows: str | None = AuthorsOpt,
    muted_authors: str | None = MuteAuthorsOpt,
    like: str | None = typer.Option(
        None,
        "--like",
        help="Add papers I like (arXiv ids or entry ids, comma-separated, papers in the "
        "database): digests rank similar papers higher.",
    ),
    unlike: str | None = typer.Option(
        None, "--unlike", help="Remove papers from the liked ones (same forms as --like)."
    ),
    import_library: Path | None = typer.Option(
        None,
        "--import-library",
        metavar="FILE",
        help="Replace the reader's library with this file's papers (BibTeX, RIS, CSL-JSON or "
        "one arXiv id or DOI per line): their titles and abstracts become liked texts.",
    ),
) -> None:
    """Change preferences; only the options given are changed."""
    app_ctx = get_context(ctx)
    changes = _changes(
        name=name,
        topics=topics,
        categories=categories,
        frequency=frequency,
        send_hour=hour,
        send_weekday=weekday,
        timezone=timezone,
        max_items=max_items,
        format=fmt,
        follows=follows,
        muted_authors=muted_authors,
    )
    if import_library is not None:
        # First: a bad file stops here, with nothing else changed either.
        library.import_library(app_ctx, email, import_library)
        if not changes and like is None and unlike is None:
            return
    if not changes and like is None and unlike is None:
        usage("nothing to update: give at least one option (see --help)")
    try:
        done = manage.update(
            app_ctx,
            ByEmail(email),
            changes,
            like=parse_refs(like) if like is not None else None,
            unlike=parse_refs(unlike) if unlike is not None else None,
        )
    except (InvalidInput, ValueError) as exc:  # votes.UnknownPaper is a ValueError
        fail(str(exc))
    diff, added, removed, shown = done.diff, done.liked_added, done.liked_removed, done.email
    liked = list(done.liked or ())
    messages = []
    if diff:
        summary = ", ".join(f"{k} {old!r} → {new!r}" for k, (old, new) in diff.items())
        messages.append(summary)
    if added or removed:
        messages.append(
            f"liked papers +{added} -{removed} (now {', '.join(liked) if liked else 'none'})"
        )
    if not messages:
        console.print(f"{escape(shown)}: nothing changed", highlight=False)
        return
    console.print(f"updated {escape(shown)}: {escape('; '.join(messages))}", highlight=False)


def _change_status(ctx: typer.Context, email: str, move: Move, verb: str) -> None:
    """Apply one transition from the CLI: its result, or its one-line refusal."""
    try:
        done = manage.change_status(get_context(ctx), ByEmail(email), move)
    except InvalidInput as exc:
        fail(str(exc))
    if done.changed:
        console.print(f"{escape(done.email)} is now {done.status}", highlight=False)
    else:
        console.print(
            f"{escape(done.email)} is already {done.status} (nothing to {verb})", highlight=False
        )


@app.command("suspend")
def suspend_cmd(
    ctx: typer.Context, email: str = typer.Argument(..., help="The subscriber's address.")
) -> None:
    """Stop sending to a subscriber for now (resume undoes it)."""
    _change_status(ctx, email, Move.SUSPEND, "suspend")


@app.command("resume")
def resume_cmd(
    ctx: typer.Context, email: str = typer.Argument(..., help="The subscriber's address.")
) -> None:
    """Undo suspend: active again (pending if they never confirmed)."""
    _change_status(ctx, email, Move.RESUME, "resume")


@app.command("confirm")
def confirm_cmd(
    ctx: typer.Context, email: str = typer.Argument(..., help="The subscriber's address.")
) -> None:
    """Confirm a pending address for the person (only with their consent)."""
    _change_status(ctx, email, Move.CONFIRM, "confirm")


@app.command("lift")
def lift_cmd(
    ctx: typer.Context, email: str = typer.Argument(..., help="The subscriber's address.")
) -> None:
    """Lift a suppression (a bounce or a spam complaint): mail may go there again."""
    try:
        said = manage.lift(get_context(ctx), email)
    except InvalidInput as exc:
        fail(str(exc))
    console.print(escape(said), highlight=False)


@app.command("revoke-links")
def revoke_links_cmd(
    ctx: typer.Context, email: str = typer.Argument(..., help="The subscriber's address.")
) -> None:
    """Invalidate every confirm/unsubscribe/preferences link mailed so far (e.g. a leaked mail)."""
    try:
        version = manage.revoke_links(get_context(ctx), ByEmail(email))
    except InvalidInput as exc:
        fail(str(exc))
    shown = email.strip()
    console.print(f"every earlier link of {escape(shown)} is revoked (version {version})")


@app.command("remove")
def remove_cmd(
    ctx: typer.Context,
    email: str = typer.Argument(..., help="The subscriber's address."),
    forget_: bool = typer.Option(
        False,
        "--forget",
        help="Delete the personal data (record, deliveries, history); keeps one anonymous "
        "audit event. The address could then be added again. Asks first on a terminal.",
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before --forget erases."),
) -> None:
    """Unsubscribe (the record stays so the address is never mailed again), or --forget it."""
    app_ctx = get_context(ctx)
    # Erasing cannot be undone: a person at a terminal says so first (scripts, with no
    # terminal, are not asked; --yes skips the question).
    if (
        forget_
        and not yes
        and sys.stdin.isatty()
        and not typer.confirm(
            f"erase {email.strip()} for good (record, deliveries, votes, history)?", default=False
        )
    ):
        console.print("nothing erased", highlight=False)
        raise typer.Exit(1)
    try:
        if forget_:
            gone = manage.forget(app_ctx, ByEmail(email))
            message = (
                f"forgot {escape(gone.email)}: deleted the subscriber, {gone.deliveries} "
                f"deliveries, {gone.events} events and {gone.votes} votes"
            )
        else:
            done = manage.unsubscribe(app_ctx, ByEmail(email), way="admin")
            shown = escape(done.email or email.strip())
            message = (
                f"unsubscribed {shown} (kept so it is not mailed again)"
                if done.changed
                else f"{shown} is already {done.status}; no digest goes there"
            )
    except InvalidInput as exc:
        fail(str(exc))
    console.print(message, highlight=False)


subscriber_show.register(app)
subscribers_csv.register(app)
