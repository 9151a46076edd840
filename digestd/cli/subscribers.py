"""`digestd subscribers …`: the admins' daily tool for people and their preferences."""

from __future__ import annotations

import json
import os
import shlex
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.progress import DownloadColumn, MofNCompleteColumn
from rich.table import Table
from sqlmodel import col, select

from digestd.cli.common import (
    console,
    err_console,
    fail,
    find_subscriber,
    get_context,
    print_json,
    print_json_stream,
)
from digestd.cli.groups import Group
from digestd.cli.progress import CountingWriter, QuietOpt, progress_bar
from digestd.core.db import session_scope
from digestd.core.models import Event, Subscriber
from digestd.core.statuses import SubscriberStatus, parse_subscriber_status
from digestd.subscribers import lifecycle as subs
from digestd.subscribers import votes
from digestd.subscribers.csv_io import ImportRejected, export_csv, import_csv
from digestd.subscribers.lifecycle import (
    InvalidInput,
    Preferences,
    SubscriberExists,
    add_subscriber,
    count_by_status,
    count_matching,
    forget,
    list_page,
    revoke_links,
    subscriber_dict,
    update_preferences,
)

app = typer.Typer(cls=Group, help="Manage subscribers and their preferences.", no_args_is_help=True)

RECENT_EVENTS = 20

# Options shared by `add` and `update`. Values arrive as text and are validated by the
# service, so a bad value gives one line and exit 1 (not click's multi-line usage error).
NameOpt = typer.Option(None, "--name", help="Display name.")
TopicsOpt = typer.Option(
    None, "--topics", help='Topics to match, e.g. \'"KV cache" retrieval -survey\' ("" clears).'
)
CategoriesOpt = typer.Option(
    None, "--categories", help='Comma-separated categories, e.g. cs.CL,cs.LG ("" clears).'
)
FrequencyOpt = typer.Option(None, "--frequency", help="daily or weekly.")
HourOpt = typer.Option(None, "--hour", help="Local hour to send, 0-23.")
WeekdayOpt = typer.Option(None, "--weekday", help="Day for weekly digests: mon..sun.")
TimezoneOpt = typer.Option(None, "--timezone", help="IANA time zone, e.g. Europe/Berlin.")
MaxItemsOpt = typer.Option(None, "--max-items", help="Papers per digest, 1-100.")
FormatOpt = typer.Option(None, "--format", help="html or text.")
JsonOpt = typer.Option(False, "--json", help="Stable JSON output (sorted keys) for scripts.")


def _status_filter(status: str | None) -> SubscriberStatus | None:
    """The --status option as a known status (None: all), or one line and exit 1."""
    if status is None:
        return None
    try:
        return parse_subscriber_status(status)
    except ValueError as exc:
        fail(f"--{exc}")


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
    status = SubscriberStatus.ACTIVE if confirmed else SubscriberStatus.PENDING
    now = app_ctx.now()
    try:
        with session_scope(app_ctx.engine) as session:
            try:
                prefs = Preferences(**changes)
                sub = add_subscriber(
                    session, email, prefs, status=status, actor=app_ctx.actor, now=now
                )
                verb = "added"
            except SubscriberExists as exc:
                sub = exc.subscriber
                if sub.status not in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED):
                    fail(f"{exc}; use `digestd subscribers update` to change it")
                if sub.status == SubscriberStatus.UNSUBSCRIBED and not confirmed:
                    # Never switch an unsubscribed address back on by accident.
                    fail(
                        f"{sub.email} is {sub.status}; add --confirmed to subscribe it again "
                        "(only with the person's consent)"
                    )
                update_preferences(session, sub, changes, actor=app_ctx.actor, now=now)
                # The person agreed again (--confirmed): subscribed and confirmed at once.
                # A bounced address is refused here: only `lift` reopens it.
                subs.subscribe(session, sub, actor=app_ctx.actor, now=now, reason="re-added")
                subs.confirm(session, sub, actor=app_ctx.actor, now=now, reason="re-added")
                verb = "re-subscribed"
            result = subscriber_dict(sub)
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
    as_json: bool = JsonOpt,
) -> None:
    """List subscribers, oldest first, a page at a time (--search to find someone)."""
    wanted = _status_filter(status)
    text = search.strip() if search else None
    app_ctx = get_context(ctx)
    with session_scope(app_ctx.engine) as session:
        if as_json:
            print_json_stream(
                subscriber_dict(sub) for sub in _pages(session, text, wanted, after, limit)
            )
            return
        subs = list_page(session, search=text, status=wanted, after_id=after, limit=limit or PAGE)
        matching = count_matching(session, search=text, status=wanted)
        remaining = (
            count_matching(session, search=text, status=wanted, after_id=after)
            if after
            else matching
        )
        before = matching - remaining  # rows on earlier pages
        rows = [subscriber_dict(sub) for sub in subs]
    console.print(_subscriber_table(rows), width=min(console.width, 80))
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


def _pages(
    session: Any, text: str | None, status: str | None, after: int, limit: int | None
) -> Iterator[Subscriber]:
    """Matching subscribers page by page (bounded memory), at most `limit` if given."""
    left = limit
    while left is None or left > 0:
        size = PAGE * 20 if left is None else min(left, PAGE * 20)
        page = list_page(session, search=text, status=status, after_id=after, limit=size)
        if not page:
            return
        yield from page
        after = page[-1].id or after
        if left is not None:
            left -= len(page)
        if len(page) < size:
            return


def _subscriber_table(rows: list[dict[str, Any]]) -> Table:
    """Subscribers in at most 80 columns: the address and name are cut, never wrapped."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("email", no_wrap=True, overflow="ellipsis", max_width=30)
    table.add_column("name", no_wrap=True, overflow="ellipsis", max_width=18)
    table.add_column("status", no_wrap=True)
    table.add_column("schedule", no_wrap=True)
    table.add_column("timezone", no_wrap=True, overflow="ellipsis", max_width=16)
    for s in rows:
        day = f" {s['send_weekday']}" if s["frequency"] == "weekly" else ""
        table.add_row(
            str(s["id"]),
            escape(s["email"]),
            escape(s["name"]),
            s["status"],
            f"{s['frequency']}{day} {s['send_hour']:02d}:00",
            s["timezone"],
        )
    return table


@app.command("show")
def show_cmd(
    ctx: typer.Context,
    email: str = typer.Argument(..., help="The subscriber's address."),
    as_json: bool = JsonOpt,
) -> None:
    """Show one subscriber with their recent audit events."""
    app_ctx = get_context(ctx)
    with session_scope(app_ctx.engine) as session:
        sub = find_subscriber(session, email)
        data = subscriber_dict(sub)
        rows = session.exec(
            select(Event)
            .where(Event.subscriber_id == sub.id)
            .order_by(col(Event.created_at).desc(), col(Event.id).desc())
            .limit(RECENT_EVENTS)
        ).all()
        events: list[dict[str, Any]] = [
            {
                "action": e.action,
                "actor": e.actor,
                "at": e.created_at.isoformat(),
                "detail": e.detail,
            }
            for e in rows
        ]
        assert sub.id is not None
        voted: list[dict[str, str]] = [
            {
                "paper": v.paper_id,
                "title": v.title,
                "vote": "like" if v.interest else votes.direction_name(v.value),
                "at": v.created_at.isoformat(),
            }
            for v in votes.listing(session, sub.id)
        ]
    if as_json:
        print_json({"subscriber": data, "events": events, "votes": voted})
        return
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in data.items():
        shown = ",".join(value) if isinstance(value, list) else ("" if value is None else value)
        table.add_row(key, escape(str(shown)))
    console.print(table)
    history = Table(title=f"recent events (newest first, up to {RECENT_EVENTS})")
    for header in ("at", "action", "actor", "detail"):
        history.add_column(header, overflow="fold")
    for e in events:
        detail = json.dumps(e["detail"], sort_keys=True, ensure_ascii=False)
        history.add_row(e["at"], e["action"], escape(e["actor"]), escape(detail))
    console.print(history)
    if voted:
        table = Table(title="liked papers and votes (newest first)")
        for header in ("at", "vote", "paper", "title"):
            table.add_column(header, overflow="fold")
        for v in voted:
            table.add_row(v["at"], v["vote"], v["paper"], escape(v["title"]))
        console.print(table)


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
    like: str | None = typer.Option(
        None,
        "--like",
        help="Add papers I like (arXiv ids or entry ids, comma-separated, papers in the "
        "database): digests rank similar papers higher.",
    ),
    unlike: str | None = typer.Option(
        None, "--unlike", help="Remove papers from the liked ones (same forms as --like)."
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
    )
    if not changes and like is None and unlike is None:
        fail("nothing to update: give at least one option (see --help)")
    liked: list[str] = []
    try:
        with session_scope(app_ctx.engine) as session:
            sub = find_subscriber(session, email)
            now = app_ctx.now()
            diff = update_preferences(session, sub, changes, actor=app_ctx.actor, now=now)
            shown = sub.email
            assert sub.id is not None
            added = removed = 0
            if like is not None:
                added = votes.like(
                    session, sub.id, votes.find_papers(session, votes.parse_refs(like)), now=now
                )
            if unlike is not None:
                removed = votes.unlike(
                    session, sub.id, votes.find_papers(session, votes.parse_refs(unlike))
                )
            if like is not None or unlike is not None:
                liked = [v.paper_id for v in votes.interests(session, sub.id)]
    except (InvalidInput, ValueError) as exc:  # votes.UnknownPaper is a ValueError
        fail(str(exc))
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


def _change_status(ctx: typer.Context, email: str, move: subs.Transition, verb: str) -> None:
    """Apply one transition from the CLI: its result, or its one-line refusal."""
    app_ctx = get_context(ctx)
    with session_scope(app_ctx.engine) as session:
        sub = find_subscriber(session, email)
        try:
            changed = move(session, sub, actor=app_ctx.actor, now=app_ctx.now(), reason="admin")
        except subs.TransitionError as exc:
            fail(str(exc))
        shown, status = sub.email, sub.status
    if changed:
        console.print(f"{escape(shown)} is now {status}", highlight=False)
    else:
        console.print(f"{escape(shown)} is already {status} (nothing to {verb})", highlight=False)


@app.command("suspend")
def suspend_cmd(
    ctx: typer.Context, email: str = typer.Argument(..., help="The subscriber's address.")
) -> None:
    """Stop sending to a subscriber for now (resume undoes it)."""
    _change_status(ctx, email, subs.suspend, "suspend")


@app.command("resume")
def resume_cmd(
    ctx: typer.Context, email: str = typer.Argument(..., help="The subscriber's address.")
) -> None:
    """Undo suspend: active again (pending if they never confirmed)."""
    _change_status(ctx, email, subs.resume, "resume")


@app.command("confirm")
def confirm_cmd(
    ctx: typer.Context, email: str = typer.Argument(..., help="The subscriber's address.")
) -> None:
    """Confirm a pending address for the person (only with their consent)."""
    _change_status(ctx, email, subs.confirm, "confirm")


@app.command("lift")
def lift_cmd(
    ctx: typer.Context, email: str = typer.Argument(..., help="The subscriber's address.")
) -> None:
    """Lift a suppression (a bounce or a spam complaint): mail may go there again."""
    from digestd.subscribers.bounce_policy import lift_suppression

    app_ctx = get_context(ctx)
    with session_scope(app_ctx.engine) as session:
        sub = find_subscriber(session, email)
        try:
            said = lift_suppression(session, sub, actor=app_ctx.actor, now=app_ctx.now())
        except InvalidInput as exc:
            fail(str(exc))
    console.print(escape(said), highlight=False)


@app.command("revoke-links")
def revoke_links_cmd(
    ctx: typer.Context, email: str = typer.Argument(..., help="The subscriber's address.")
) -> None:
    """Invalidate every confirm/unsubscribe/preferences link mailed so far (e.g. a leaked mail)."""
    app_ctx = get_context(ctx)
    with session_scope(app_ctx.engine) as session:
        sub = find_subscriber(session, email)
        version = revoke_links(session, sub, actor=app_ctx.actor, now=app_ctx.now())
        shown = sub.email
    console.print(f"every earlier link of {escape(shown)} is revoked (version {version})")


@app.command("remove")
def remove_cmd(
    ctx: typer.Context,
    email: str = typer.Argument(..., help="The subscriber's address."),
    forget_: bool = typer.Option(
        False,
        "--forget",
        help="Delete the personal data (record, deliveries, history); keeps one anonymous "
        "audit event. The address could then be added again.",
    ),
) -> None:
    """Unsubscribe (the record stays so the address is never mailed again), or --forget it."""
    app_ctx = get_context(ctx)
    with session_scope(app_ctx.engine) as session:
        sub = find_subscriber(session, email)
        shown = sub.email
        if forget_:
            event = forget(session, sub, actor=app_ctx.actor, now=app_ctx.now())
            counts = event.detail
            message = (
                f"forgot {escape(shown)}: deleted the subscriber, "
                f"{counts['deliveries_deleted']} deliveries, {counts['events_deleted']} events "
                f"and {counts.get('votes_deleted', 0)} votes"
            )
        elif subs.unsubscribe(session, sub, actor=app_ctx.actor, now=app_ctx.now(), way="admin"):
            message = f"unsubscribed {escape(shown)} (kept so it is not mailed again)"
        else:
            message = f"{escape(shown)} is already {sub.status}; no digest goes there"
    console.print(message, highlight=False)


@app.command("import")
def import_cmd(
    ctx: typer.Context,
    file: Path = typer.Argument(
        ..., help="CSV with an email column; any columns of `export`; Mailchimp/listmonk exports."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check everything, write nothing."),
    update_existing: bool = typer.Option(
        False, "--update-existing", help="Update known addresses instead of rejecting them."
    ),
    ignore_unknown_columns: bool = typer.Option(
        False, "--ignore-unknown-columns", help="Skip columns digestd does not know."
    ),
    raw: bool = typer.Option(
        False,
        "--raw",
        help="Take cells as they are (a file from `export --raw`); without it the `'` that "
        "`export` puts before formula-like cells is removed.",
    ),
    quiet: bool = QuietOpt,
) -> None:
    """Import subscribers from CSV: all rows or none; every bad row is listed by line."""
    if not file.is_file():
        fail(f"{file}: no such file")
    app_ctx = get_context(ctx)
    total = file.stat().st_size
    progress = progress_bar("importing", DownloadColumn(), quiet=quiet)
    task = progress.add_task("import", total=total)
    try:
        with progress, session_scope(app_ctx.engine) as session:
            report = import_csv(
                session,
                file,
                actor=app_ctx.actor,
                now=app_ctx.now(),
                update_existing=update_existing,
                ignore_unknown_columns=ignore_unknown_columns,
                dry_run=dry_run,
                batch_size=app_ctx.settings.batch_size if app_ctx.settings.batch_size > 1 else 1000,
                on_bytes=lambda n: progress.advance(task, n),
                raw=raw,
            )
    except ImportRejected as exc:
        for line in exc.report.errors:
            err_console.print(f"{file}: {line}", highlight=False, markup=False, soft_wrap=True)
        fail(f"{escape(str(file))}: {escape(str(exc))}")
    except OSError as exc:
        fail(f"{file}: {exc.strerror or exc}")
    prefix = "dry run, nothing written: would add" if dry_run else "added"
    console.print(
        f"{prefix} {report.added}, "
        f"{'would update' if dry_run else 'updated'} {report.updated}, "
        f"unchanged {report.unchanged} ({report.rows} rows in {report.seconds:.2f}s, "
        f"{report.rows_per_second:,.0f} rows/s)",
        highlight=False,
    )
    if report.ignored_columns:
        skipped = ", ".join(report.ignored_columns)
        console.print(f"columns not imported: {escape(skipped)}", highlight=False)


@app.command("export")
def export_cmd(
    ctx: typer.Context,
    file: Path | None = typer.Argument(None, help="Write here instead of stdout."),
    status: str | None = typer.Option(None, "--status", help="Only this status."),
    raw: bool = typer.Option(
        False,
        "--raw",
        help="Write values as they are, for machines. Without it a cell a spreadsheet would "
        "run as a formula (starting with = + - @, tab or CR) gets a leading ' (import undoes it).",
    ),
    quiet: bool = QuietOpt,
) -> None:
    """Export subscribers as CSV (the import format), safe to open in a spreadsheet; stdout
    unless FILE is given."""
    wanted = _status_filter(status)
    app_ctx = get_context(ctx)
    progress = progress_bar("exporting", MofNCompleteColumn(), quiet=quiet)
    with progress, session_scope(app_ctx.engine) as session:
        if not progress.disable:
            counts = count_by_status(session)
            total = counts.get(wanted, 0) if wanted else sum(counts.values())
            task = progress.add_task("export", total=total + 1)  # + the header line

        def counted(out: Any) -> Any:
            return out if progress.disable else CountingWriter(out, lambda: progress.advance(task))

        if file is None:
            export_csv(session, counted(sys.stdout), status=wanted, raw=raw)
            return
        # Write next to the target and rename: a failed export never leaves half a file.
        directory = file.resolve().parent
        if not directory.is_dir():
            fail(f"{file}: directory {directory} does not exist")
        fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
                count = export_csv(session, counted(out), status=wanted, raw=raw)
            os.replace(tmp, file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    console.print(f"exported {count} subscribers to {escape(str(file))}", highlight=False)
