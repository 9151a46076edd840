"""`digestd inbound [FILE|-]...` and `digestd inbound list`: mail that comes back.

`digestd inbound FILE...` (or standard input) is what an MTA `pipe`, a `.forward` or
procmail runs: each message is recorded and acted on, and the exit status is 0 once it
is recorded, so the MTA never retries forever; only when the database cannot be reached is
it 75 (EX_TEMPFAIL), which makes the MTA keep the message and try again later.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.text import Text

from digestd.cli.common import (
    console,
    err_console,
    fail,
    first_line,
    get_context,
    print_json,
    short_time,
    usage,
)
from digestd.cli.groups import Group
from digestd.cli.tables import Column, print_facts, print_table, width
from digestd.core.db import redact_url

EX_TEMPFAIL = 75
READ_LIMIT_FACTOR = 2  # read at most this many times DIGESTD_INBOUND_MAX_BYTES from a file


class _ProcessByDefault(Group):
    """`digestd inbound FILE...` runs the hidden `process` command; `list` and `show` stay
    commands. The group's help lists the options of `digestd inbound [FILE|-]...` too."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # Typer vendors Click
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["process", *args]
        return super().parse_args(ctx, args)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        process = self.commands["process"]
        own = self.params
        shown = [p for p in process.get_params(ctx) if p.name != "help"]
        self.params = [*own, *shown]
        try:
            super().format_help(ctx, formatter)
        finally:
            self.params = own


app = typer.Typer(
    cls=_ProcessByDefault,
    help=(
        "Bounces, complaints, unsubscribes and commands that come back by mail.\n\n"
        "digestd inbound [FILE|-]... [--dry-run] [--json] [--mail-from ADDR] [--rcpt-to ADDR]:"
        " record and act on messages from files or standard input (exit 0 once recorded).\n\n"
        "digestd inbound list [--kind K] [--wide] [--json]: what came in;"
        " digestd inbound show ID [--wide] [--json]: one of them whole.\n\n"
        "digestd inbound --listen: only the inbound SMTP listener on DIGESTD_INBOUND_LISTEN"
        " (digestd run serves it too), until SIGTERM."
    ),
)


@app.command("process", hidden=True)
def process_cmd(
    ctx: typer.Context,
    files: list[str] = typer.Argument(
        None, metavar="FILE", help="Message files; '-' or none: standard input."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Read and classify; change nothing."),
    as_json: bool = typer.Option(False, "--json", help="A JSON array, one object per message."),
    mail_from: str = typer.Option(
        None, "--mail-from", metavar="ADDR", help="Envelope sender (MTA pipe)."
    ),
    rcpt_to: list[str] = typer.Option(
        None, "--rcpt-to", metavar="ADDR", help="Envelope recipient (MTA pipe); repeatable."
    ),
    listen: bool = typer.Option(
        False,
        "--listen",
        help="Serve only the inbound SMTP listener on DIGESTD_INBOUND_LISTEN until SIGTERM.",
    ),
) -> None:
    """Record and act on inbound messages from files or standard input."""
    if listen:
        _serve_listener(ctx, files, dry_run or as_json or bool(mail_from or rcpt_to))
        return
    from digestd.inbound.process import process_message  # on use: keeps --help quick

    app_ctx = get_context(ctx, migrate=False)
    try:
        app_ctx.migrate()
    except Exception as exc:  # the database is down: the MTA must keep the message
        where = redact_url(app_ctx.settings.database_url)
        fail(f"database {where}: {first_line(exc)}; try again later", EX_TEMPFAIL)
    limit = app_ctx.settings.inbound_max_bytes * READ_LIMIT_FACTOR + 1
    results: list[dict[str, Any]] = []
    unreadable = 0
    for name in files or ["-"]:
        try:
            if name == "-":
                raw = sys.stdin.buffer.read(limit)
            else:
                with Path(name).open("rb") as fh:
                    raw = fh.read(limit)
        except OSError as exc:
            err_console.print(f"[red]error:[/red] {escape(name)}: {exc.strerror or exc}")
            unreadable += 1
            continue
        try:
            result = process_message(
                app_ctx,
                raw,
                mail_from=mail_from,
                rcpt_to=rcpt_to or (),
                source=name,
                dry_run=dry_run,
            )
        except Exception as exc:  # the database, not the message: let the MTA try again
            fail(f"{name}: not recorded, try again later: {first_line(exc)}", EX_TEMPFAIL)
        if as_json:
            results.append(result.as_json())
        else:
            done = "" if dry_run else f" #{result.recorded_id}"
            effect = f" → {result.effect}" if result.effect else ""
            # One line a message, however long: an MTA's log or a script reads it whole.
            console.print(
                f"{escape(name)}: {result.kind}{done}: {escape(result.summary)}{escape(effect)}",
                highlight=False,
                soft_wrap=True,
            )
    if as_json:
        print_json(results)
    if unreadable:
        raise typer.Exit(1)


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    kind: str = typer.Option(None, "--kind", help="Only this kind (bounce, complaint, …)."),
    limit: int = typer.Option(100, "--limit", min=1, max=100000, help="Newest N messages."),
    wide: bool = typer.Option(False, "--wide", help="Every column, one line a message."),
    as_json: bool = typer.Option(False, "--json", help="Stable JSON output for scripts."),
) -> None:
    """The newest inbound messages: kind, subscriber, evidence, status, what it changed."""
    from digestd.core.db import session_scope
    from digestd.inbound.process import KINDS
    from digestd.inbound.store import inbound_dict, list_inbound

    if kind is not None and kind not in KINDS:
        usage(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    app_ctx = get_context(ctx)
    with session_scope(app_ctx.engine) as session:
        rows = [
            inbound_dict(row, email) for row, email in list_inbound(session, kind=kind, limit=limit)
        ]
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no inbound messages" + (f" of kind {kind}" if kind else ""))
        return
    columns = [
        Column("id", keep=True, right=True),
        Column("received", priority=2),
        Column("kind", keep=True),
        Column("status", priority=3),
        Column("evidence", priority=1),
        Column("subscriber", keep=True),
    ]
    if wide:
        columns += [Column("summary"), Column("effect")]
    else:
        columns.append(Column("effect", wrap=True, priority=4))
    table = []
    for r in rows:
        cells = [
            str(r["id"]),
            short_time(_parse_time(r["received_at"])),
            r["kind"],
            " ".join(x for x in (r["status"], r["severity"]) if x) or "-",
            _evidence_cell(r["kind"], r["evidence"]) or "-",
            r["subscriber"] or r["address"] or "-",
        ]
        if wide:
            cells.append(r["summary"])
        table.append([*cells, r["effect"] or "-"])
    print_table(columns, table, wide=wide, more="--wide or digestd inbound show ID")


@app.command("show")
def show_cmd(
    ctx: typer.Context,
    inbound_id: int = typer.Argument(..., metavar="ID", help="The record's id (inbound list)."),
    as_json: bool = typer.Option(False, "--json", help="Stable JSON output for scripts."),
    wide: bool = typer.Option(
        False, "--wide", help="Every recipient column; each header on one line."
    ),
) -> None:
    """One message that came back: classification, recipients, what it changed, headers."""
    from digestd.core.db import session_scope
    from digestd.inbound.store import get_inbound, inbound_dict

    app_ctx = get_context(ctx)
    with session_scope(app_ctx.engine) as session:
        found = get_inbound(session, inbound_id)
        if found is None:
            fail(f"no inbound message {inbound_id}")
        row, email = found
        data = inbound_dict(row, email)
        data["message_id"] = row.message_id
        data["size"] = row.size
        data["headers"] = [list(h) for h in row.headers]
    if as_json:
        print_json(data)
        return
    evidence = _evidence_cell(data["kind"], data["evidence"]) or "-"
    status = " ".join(x for x in (data["status"], data["severity"]) if x) or "-"
    facts = [
        # Where it came from: smtp, imap, a webhook, or the file's name (--json: its path).
        ("inbound", f"#{data['id']} ({Path(data['source'] or '-').name}, {data['size']} bytes)"),
        ("received", short_time(_parse_time(data["received_at"]))),
        ("kind", data["kind"]),
        ("status", status),
        ("reason", data["reason"] or "-"),
        ("summary", data["summary"] or "-"),
        ("subscriber", data["subscriber"] or "-"),
        ("address", data["address"] or "-"),
        ("delivery", f"#{data['delivery']}" if data["delivery"] else "-"),
        ("evidence", evidence),
        ("changed", data["effect"] or "nothing"),
        ("Message-ID", data["message_id"] or "-"),
    ]
    print_facts(facts)
    recipients = data["recipients"] or []
    if recipients:
        console.print(f"recipients ({len(recipients)}):", style="bold", highlight=False)
        columns = [
            Column("status", keep=True),
            Column("action", priority=3),
            Column("hard", priority=1),
            Column("reason", priority=2),
            Column("address", keep=True),
        ]
        print_table(
            columns,
            [[_cell(r.get(c.header)) for c in columns] for r in recipients],
            wide=wide,
            more="--wide or --json",
        )
    console.print(f"headers ({len(data['headers'])}):", style="bold", highlight=False)
    out = Text()
    for name, value in data["headers"]:
        line = f"{name}: {' '.join(str(value).split())}"
        # Folded as mail folds headers: between words, continued indented; only a token
        # longer than a whole line (a DKIM signature's base64) is split.
        folded = (
            [line]
            if wide
            else textwrap.wrap(line, width(), subsequent_indent="    ", break_on_hyphens=False)
        )
        out.append(f"{name}:", style="bold")
        out.append("\n".join(folded)[len(name) + 1 :] + "\n")
    console.print(out, highlight=False, end="", soft_wrap=True, crop=False)


def _evidence_cell(kind: str, evidence: str | None) -> str:
    """What tied a record to a message we sent; "no evidence" where a bounce, complaint or
    unsubscribe had none (so it changed nothing)."""
    from digestd.inbound.evidence import ACTING_KINDS, NO_EVIDENCE

    if evidence:
        return escape(evidence)
    return NO_EVIDENCE if kind in ACTING_KINDS else ""


def _parse_time(value: str | None) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(value) if value else None


def _serve_listener(ctx: typer.Context, files: list[str] | None, other_options: bool) -> None:
    """`digestd inbound --listen`: the SMTP listener alone (e.g. next to `digestd run --once`
    from cron, or as its own service); exits 0 on SIGTERM/SIGINT."""
    import asyncio

    from digestd.daemon import DaemonStartError, run_inbound_listener

    if files or other_options:
        usage("--listen takes no FILE and no --dry-run/--json/--mail-from/--rcpt-to")
    try:
        raise typer.Exit(asyncio.run(run_inbound_listener(get_context(ctx))))
    except DaemonStartError as exc:
        fail(str(exc))


def _cell(value: Any) -> str:
    """A recipient's field as a table cell: "-" for none or empty (a column never blank)."""
    return "-" if value is None or value == "" else str(value)
