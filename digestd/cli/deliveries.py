"""`digestd deliveries list|retry`: what was sent, what waits, and why something failed."""

from __future__ import annotations

import asyncio
from dataclasses import asdict

import typer
from rich.markup import escape
from rich.table import Table

from digestd import deliveries
from digestd.cli.common import console, fail, first_line, get_context, print_json, short_time
from digestd.db import session_scope
from digestd.statuses import DeliveryStatus, parse_delivery_status

app = typer.Typer(help="Inspect and retry digest deliveries.", no_args_is_help=True)


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    status: str = typer.Option(None, "--status", help=f"One of {', '.join(DeliveryStatus)}."),
    limit: int = typer.Option(100, "--limit", min=1, max=100000, help="Newest N deliveries."),
    as_json: bool = typer.Option(False, "--json", help="Stable JSON output for scripts."),
) -> None:
    """The newest deliveries; failures show the SMTP server's reply."""
    wanted = None
    if status is not None:
        try:
            wanted = parse_delivery_status(status)
        except ValueError as exc:
            fail(f"--{exc}")
    app_ctx = get_context(ctx)
    with session_scope(app_ctx.engine) as session:
        rows = deliveries.list_deliveries(session, status=wanted, limit=limit)
    if as_json:
        print_json([_as_json(r) for r in rows])
        return
    if not rows:
        console.print("no deliveries" + (f" with status {status}" if status else ""))
        return
    table = Table("id", "subscriber", "period", "status", "tries", "papers", "when", "reply")
    for r in rows:
        when = r.sent_at if r.status == DeliveryStatus.SENT else r.next_attempt_at or r.due_at
        table.add_row(
            str(r.id),
            escape(r.email),
            r.period,
            r.status,
            str(r.attempts),
            str(r.entry_count),
            short_time(when),
            escape(r.error or ""),
        )
    console.print(table)


# The fields `deliveries list --json` has always printed (a stable contract for scripts).
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
) -> None:
    """Make waiting (or, with --failed, only failed) deliveries due now, and send them."""
    app_ctx = get_context(ctx)
    with session_scope(app_ctx.engine) as session:
        count = deliveries.retry_now(session, app_ctx.now(), failed=failed)
    what = "failed" if failed else "waiting"
    console.print(f"rescheduled {count} {what} deliveries", highlight=False)
    if no_send or count == 0:
        return
    from digestd.cli.run import echo_problem
    from digestd.sending import send_due  # imported on use: keeps `digestd --help` quick

    try:
        report = asyncio.run(send_due(app_ctx, worker_id=deliveries.new_worker_id()))
    except Exception as exc:
        fail(f"deliveries retry: {first_line(exc)}")
    console.print(
        f"sent {report.sent}, retry later {report.retry}, failed {report.failed}, "
        f"skipped {report.skipped}",
        highlight=False,
    )
    echo_problem(report)
