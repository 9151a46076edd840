"""`digestd deliveries list|show|retry`: what was sent, what waits, and why something failed."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import datetime

import typer

from digestd.cli.common import (
    EX_TEMPFAIL,
    console,
    fail,
    find_subscriber,
    first_line,
    get_context,
    print_json,
    short_time,
    temporary,
    usage,
)
from digestd.cli.entries import parse_since
from digestd.cli.groups import Group
from digestd.cli.progress import QuietOpt, SendProgress
from digestd.cli.tables import Column, print_facts, print_table
from digestd.core.db import session_scope
from digestd.core.statuses import CLAIMABLE, DeliveryStatus, parse_delivery_status
from digestd.delivery import deliveries
from digestd.inbound import store as inbound_store

app = typer.Typer(cls=Group, help="Inspect and retry digest deliveries.", no_args_is_help=True)


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    status: str = typer.Option(None, "--status", help=f"One of {', '.join(DeliveryStatus)}."),
    subscriber: str = typer.Option(
        None, "--subscriber", metavar="EMAIL", help="Only this subscriber's deliveries."
    ),
    since: str = typer.Option(
        None, "--since", metavar="DATE", help="Planned on or after DATE (YYYY-MM-DD, UTC)."
    ),
    limit: int = typer.Option(100, "--limit", min=1, max=100000, help="Newest N deliveries."),
    wide: bool = typer.Option(
        False, "--wide", help="Every column and whole replies, one line a delivery."
    ),
    as_json: bool = typer.Option(False, "--json", help="Stable JSON output for scripts."),
) -> None:
    """The newest deliveries; failures show the SMTP server's reply."""
    wanted = None
    if status is not None:
        try:
            wanted = parse_delivery_status(status)
        except ValueError as exc:
            usage(f"--{exc}")
    since_at = parse_since(since) if since else None
    app_ctx = get_context(ctx)
    with session_scope(app_ctx.engine) as session:
        sub_id = find_subscriber(session, subscriber).id if subscriber else None
        rows = deliveries.list_deliveries(
            session, status=wanted, subscriber_id=sub_id, since=since_at, limit=limit
        )
    if as_json:
        print_json([_as_json(r) for r in rows])
        return
    if not rows:
        console.print("no deliveries" + (f" with status {status}" if status else ""))
        return
    print_table(*_table(rows, one_subscriber=sub_id is not None), wide=wide)
    console.print("details of one: digestd deliveries show ID", style="dim", highlight=False)


def _when(r: deliveries.DeliveryRow) -> datetime | None:
    """Sent: when it was sent; waiting: its next try; otherwise when it was due."""
    return r.sent_at if r.status == DeliveryStatus.SENT else r.next_attempt_at or r.due_at


def _table(
    rows: list[deliveries.DeliveryRow], *, one_subscriber: bool
) -> tuple[list[Column], list[list[str]]]:
    """Columns and cells of `deliveries list`: ids, addresses and statuses whole; the reply
    wraps in the last column; the period, papers and tries give way first."""
    columns = [
        Column("id", keep=True, right=True),
        Column("when", priority=5),
        Column("status", keep=True),
        Column("subscriber", keep=True),
        Column("period", priority=2),
        Column("papers", priority=1, right=True),
        Column("try", priority=3, right=True),
        Column("reply", wrap=True, priority=4),
    ]
    cells = [
        [
            str(r.id),
            when.strftime("%m-%d %H:%M") if (when := _when(r)) else "-",
            r.status,
            r.email,
            r.period,
            str(r.entry_count),
            str(r.attempts),
            r.error or "",
        ]
        for r in rows
    ]
    if one_subscriber:  # named once, by --subscriber: the room goes to the reply
        del columns[3]
        for row in cells:
            del row[3]
    return columns, cells


@app.command("show")
def show_cmd(
    ctx: typer.Context,
    delivery_id: int = typer.Argument(
        ..., metavar="ID", help="The delivery's id (deliveries list)."
    ),
    wide: bool = typer.Option(False, "--wide", help="Papers with their links, one line each."),
    as_json: bool = typer.Option(False, "--json", help="Stable JSON output for scripts."),
) -> None:
    """Everything about one delivery: times, attempts, replies (SMTP and what came back by
    mail), Message-ID, papers."""
    app_ctx = get_context(ctx)
    with session_scope(app_ctx.engine) as session:
        found = deliveries.get(session, delivery_id)
        if found is None:
            fail(f"no delivery {delivery_id}")
        papers = deliveries.carried_papers(session, found.id)
        came_back = [
            inbound_store.inbound_dict(row, found.email)
            for row in inbound_store.for_delivery(session, found.id)
        ]
    data = {**asdict(found), "papers": [asdict(p) for p in papers], "inbound": came_back}
    if as_json:
        print_json(data)
        return
    window = f"{short_time(found.window_start)} to {short_time(found.window_end)} (UTC)"
    facts = [
        ("delivery", f"#{found.id}"),
        ("subscriber", f"{found.email} (#{found.subscriber_id})"),
        ("period", found.period),
        ("resend of", f"#{found.resend_of}" if found.resend_of else "-"),
        ("status", found.status),
        ("attempts", str(found.attempts)),
        ("Message-ID", found.message_id),
        ("window", window),
        ("planned", short_time(found.created_at)),
        ("due", short_time(found.due_at)),
        ("next attempt", short_time(found.next_attempt_at) if found.status in CLAIMABLE else "-"),
        ("sent", short_time(found.sent_at)),
        ("lease", f"{found.claimed_by} until {short_time(found.lease_until)}"
         if found.claimed_by else "-"),
        ("reply", found.error or "-"),
        ("failure", _failure(found)),
    ]  # fmt: skip
    print_facts(facts)
    if came_back:
        console.print("came back (inbound mail):", style="bold", highlight=False)
        print_table(
            [
                Column("id", keep=True, right=True),
                Column("received", priority=1),
                Column("kind", keep=True),
                Column("status", keep=True),
                # What it changed (short); the summary repeats the address shown above.
                Column("changed", wrap=not wide, keep=True),
                *([Column("summary")] if wide else []),
            ],
            [
                [
                    str(r["id"]),
                    short_time(datetime.fromisoformat(r["received_at"])),
                    r["kind"],
                    " ".join(x for x in (r["status"], r["severity"]) if x) or "-",
                    r["effect"] or "nothing",
                    *([r["summary"] or r["reason"] or ""] if wide else []),
                ]
                for r in came_back
            ],
            wide=wide,
            more="--wide or digestd inbound show ID",
        )
    if not papers:
        console.print("papers: none recorded", highlight=False)
        return
    console.print(f"papers ({len(papers)}):", style="bold", highlight=False)
    columns = [Column("#", keep=True, right=True), Column("id", keep=True, right=True)]
    columns += [Column("title"), Column("link")] if wide else [Column("title", wrap=True)]
    print_table(
        columns,
        [[str(p.rank + 1), str(p.entry_id), p.title, *([p.url] if wide else [])] for p in papers],
        wide=wide,
    )


def _failure(row: deliveries.DeliveryRow) -> str:
    """The last failure as data: `550 5.1.1 (hard)`, `(ours)`, or "-"."""
    if row.severity is None:
        return "-"
    code = " ".join(str(x) for x in (row.smtp_code, row.enhanced_status) if x)
    return f"{code} ({row.severity})" if code else f"({row.severity})"


# The fields `deliveries list --json` has always printed (a stable contract for scripts),
# then the last failure as data (smtp_code, enhanced_status, severity: hard, soft,
# sender or ours; null when none was met).
JSON_FIELDS = (
    "id",
    "email",
    "period",
    "status",
    "attempts",
    "entry_count",
    "due_at",
    "next_attempt_at",
    "sent_at",
    "message_id",
    "error",
    "smtp_code",
    "enhanced_status",
    "severity",
    "resend_of",
)


def _as_json(row: deliveries.DeliveryRow) -> dict[str, object]:
    data = asdict(row)
    return {name: data[name] for name in JSON_FIELDS}


@app.command("retry")
def retry_cmd(
    ctx: typer.Context,
    failed: bool = typer.Option(
        False, "--failed", help="Retry only failed deliveries (with a fresh set of attempts)."
    ),
    no_send: bool = typer.Option(False, "--no-send", help="Only reschedule; do not send now."),
    quiet: bool = QuietOpt,
) -> None:
    """Make waiting (or, with --failed, only failed) deliveries due now, and send them."""
    app_ctx = get_context(ctx)
    with session_scope(app_ctx.engine) as session:
        count = deliveries.retry_now(session, app_ctx.now(), failed=failed)
    what = "failed" if failed else "waiting"
    console.print(f"rescheduled {count} {what} deliveries", highlight=False)
    if no_send or count == 0:
        return
    from digestd.cli.run import echo_problem, exit_for
    from digestd.delivery.sending import send_due  # imported on use: keeps `digestd --help` quick

    try:
        with SendProgress(app_ctx, quiet=quiet) as progress:
            report = asyncio.run(
                send_due(app_ctx, worker_id=deliveries.new_worker_id(), progress=progress)
            )
    except Exception as exc:
        fail(f"deliveries retry: {first_line(exc)}", EX_TEMPFAIL if temporary(exc) else 1)
    console.print(
        f"sent {report.sent}, retry later {report.retry}, failed {report.failed}, "
        f"skipped {report.skipped}",
        highlight=False,
    )
    echo_problem(report)
    exit_for(report)


@app.command("resend")
def resend_cmd(
    ctx: typer.Context,
    delivery_ids: list[int] = typer.Argument(..., metavar="ID", help="Sent deliveries."),
    as_json: bool = typer.Option(False, "--json", help="Stable JSON output for scripts."),
    quiet: bool = QuietOpt,
) -> None:
    """Send a sent digest again (same papers, same window) as a new message, now."""
    from digestd.cli.resend import resend_deliveries

    resend_deliveries(ctx, delivery_ids, quiet=quiet, as_json=as_json)
