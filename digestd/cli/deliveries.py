"""`digestd deliveries list|show|retry`: what was sent, what waits, and why something failed."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import datetime

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from digestd.cli.common import console, fail, first_line, get_context, print_json, short_time
from digestd.cli.progress import QuietOpt, SendProgress
from digestd.core.db import session_scope
from digestd.core.statuses import CLAIMABLE, DeliveryStatus, parse_delivery_status
from digestd.delivery import deliveries
from digestd.inbound import store as inbound_store

app = typer.Typer(help="Inspect and retry digest deliveries.", no_args_is_help=True)


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    status: str = typer.Option(None, "--status", help=f"One of {', '.join(DeliveryStatus)}."),
    limit: int = typer.Option(100, "--limit", min=1, max=100000, help="Newest N deliveries."),
    wide: bool = typer.Option(
        False, "--wide", help="Every column and whole replies (wider than 80 columns)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Stable JSON output for scripts."),
) -> None:
    """The newest deliveries; failures show the SMTP server's reply (cut to one line)."""
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
    if wide:
        console.print(_wide_table(rows))
    else:
        console.print(_narrow_table(rows), soft_wrap=True, highlight=False)
    console.print("details of one: digestd deliveries show ID", style="dim")


WIDTH = 80


def _when(r: deliveries.DeliveryRow) -> datetime | None:
    """Sent: when it was sent; waiting: its next try; otherwise when it was due."""
    return r.sent_at if r.status == DeliveryStatus.SENT else r.next_attempt_at or r.due_at


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _narrow_table(rows: list[deliveries.DeliveryRow]) -> Text:
    """At most 80 columns: addresses and replies are cut (with …), never wrapped.

    Laid out by hand: rich's tables shrink every column once one is too wide, and here the
    reply should take what is left and the short columns stay whole."""
    cells = [
        (
            str(r.id),
            r.email,
            r.status,
            str(r.attempts),
            when.strftime("%m-%d %H:%M") if (when := _when(r)) else "-",
            _one_line(r.error),
        )
        for r in rows
    ]
    # The period is left to --wide and `show`: the reply needs the room more.
    header = ("id", "subscriber", "status", "try", "when", "reply")
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    widths[1] = min(widths[1], 26)
    fixed = sum(widths[:5]) + 5  # one space between columns
    widths[5] = max(10, WIDTH - fixed)
    if fixed + widths[5] > WIDTH:  # very long ids: the address gives way
        widths[1] = max(10, widths[1] - (fixed + widths[5] - WIDTH))

    def line(values: tuple[str, ...]) -> str:
        parts = []
        for i, (value, width) in enumerate(zip(values, widths, strict=True)):
            value = _cut(value, width)
            parts.append(value.rjust(width) if i in (0, 3) else value.ljust(width))
        return " ".join(parts).rstrip()

    out = Text(line(header) + "\n", style="bold")
    out.append("\n".join(line(c) for c in cells))
    return out


def _wide_table(rows: list[deliveries.DeliveryRow]) -> Table:
    table = Table("id", "subscriber", "period", "status", "tries", "papers", "when", "reply")
    for r in rows:
        table.add_row(
            str(r.id),
            escape(r.email),
            r.period,
            r.status,
            str(r.attempts),
            str(r.entry_count),
            short_time(_when(r)),
            escape(r.error or ""),
        )
    return table


@app.command("show")
def show_cmd(
    ctx: typer.Context,
    raw_id: str = typer.Argument(..., metavar="ID", help="The delivery's id (deliveries list)."),
    as_json: bool = typer.Option(False, "--json", help="Stable JSON output for scripts."),
) -> None:
    """Everything about one delivery: times, attempts, replies (SMTP and what came back by
    mail), Message-ID, papers."""
    if not raw_id.strip().isdigit():
        fail(f"delivery id must be a number, got {raw_id!r}")
    app_ctx = get_context(ctx)
    with session_scope(app_ctx.engine) as session:
        found = deliveries.get(session, int(raw_id))
        if found is None:
            fail(f"no delivery {raw_id.strip()}")
        papers = deliveries.carried_papers(session, found.id)
        came_back = [
            inbound_store.inbound_dict(row, found.email)
            for row in inbound_store.for_delivery(session, found.id)
        ]
    data = {**asdict(found), "papers": [asdict(p) for p in papers], "inbound": came_back}
    if as_json:
        print_json(data)
        return
    facts = Table(show_header=False, box=None, pad_edge=False)
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column(overflow="fold")
    window = f"{short_time(found.window_start)} to {short_time(found.window_end)} (UTC)"
    for label, value in (
        ("delivery", f"#{found.id}"),
        ("subscriber", f"{found.email} (#{found.subscriber_id})"),
        ("period", found.period),
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
    ):  # fmt: skip
        facts.add_row(label, escape(value))
    console.print(facts)
    if came_back:
        replies = Table(title="came back (inbound mail)", title_justify="left", box=None)
        for header in ("received", "kind", "status", "summary"):
            replies.add_column(header, overflow="fold")
        for r in came_back:
            status = " ".join(x for x in (r["status"], r["severity"]) if x)
            received = short_time(datetime.fromisoformat(r["received_at"]))
            replies.add_row(received, r["kind"], status, escape(r["summary"] or r["reason"]))
        console.print(replies)
    if not papers:
        console.print("papers: none recorded", highlight=False)
        return
    table = Table(title=f"papers ({len(papers)})", title_justify="left", box=None)
    table.add_column("#", justify="right")
    table.add_column("title", overflow="fold")
    table.add_column("link", overflow="fold")
    for p in papers:
        table.add_row(str(p.rank + 1), escape(p.title), escape(p.url))
    console.print(table)


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
    from digestd.cli.run import echo_problem
    from digestd.delivery.sending import send_due  # imported on use: keeps `digestd --help` quick

    try:
        with SendProgress(app_ctx, quiet=quiet) as progress:
            report = asyncio.run(
                send_due(app_ctx, worker_id=deliveries.new_worker_id(), progress=progress)
            )
    except Exception as exc:
        fail(f"deliveries retry: {first_line(exc)}")
    console.print(
        f"sent {report.sent}, retry later {report.retry}, failed {report.failed}, "
        f"skipped {report.skipped}",
        highlight=False,
    )
    echo_problem(report)
