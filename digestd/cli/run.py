"""`digestd run --once` (ingest, plan, send, poll the inbound mailbox if one is set, exit: for
cron and tests) and `digestd send-now`.

Without `--once`, `digestd run` is the long-running daemon (`digestd.daemon.run_forever`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any

import typer

from digestd.cli.common import (
    EX_PROBLEM,
    EX_TEMPFAIL,
    console,
    fail,
    first_line,
    get_context,
    print_json,
    temporary,
    usage,
)
from digestd.cli.progress import QuietOpt, SendProgress, progress_bar
from digestd.core.context import AppContext
from digestd.delivery.deliveries import new_worker_id
from digestd.delivery.planning import PlanReport, plan_due

if TYPE_CHECKING:
    from digestd.delivery.sending import SendReport


def _summary(plan: PlanReport, sent: SendReport, fetched: str | None = None) -> str:
    parts = [fetched] if fetched else []
    parts.append(f"planned {plan.planned} new deliveries ({plan.existing} already planned)")
    parts.append(
        f"sent {sent.sent}, retry later {sent.retry}, failed {sent.failed}, skipped {sent.skipped}"
    )
    if sent.bounced:
        parts.append(f"{sent.bounced} subscriber(s) marked bounced")
    return "; ".join(parts)


def echo_problem(sent: SendReport) -> None:
    """One stderr line with why deliveries were put off or failed (the SMTP server's words)."""
    if sent.problem:
        typer.echo(f"problem: {sent.problem}", err=True)


def exit_for(sent: SendReport) -> None:
    """Exit 75 (temporary) when digests were put off because the relay is down or refused
    us: nothing of those was sent, and the same command later may work (README "Exit
    codes"). They wait in `retry`; `deliveries retry` sends them once the relay is back."""
    if sent.put_off_ours:
        typer.echo(
            f"{sent.put_off_ours} digest(s) not sent: the relay is down or refused us; "
            "they wait for a retry (digestd deliveries retry)",
            err=True,
        )
        raise typer.Exit(EX_TEMPFAIL)


def _report_dict(
    plan: PlanReport, sent: SendReport, fetch: dict[str, Any] | None = None
) -> dict[str, Any]:
    out = {"plan": dataclasses.asdict(plan), "send": dataclasses.asdict(sent)}
    if fetch is not None:
        out["ingest"] = fetch
    return out


async def _once(
    app: AppContext, ingest: bool, quiet: bool = False
) -> tuple[dict[str, Any] | None, PlanReport, SendReport]:
    from digestd.delivery.sending import send_due  # imported on use: keeps `digestd --help` quick

    fetch = None
    if ingest:
        from digestd.ingest import fetch_sources

        bar = progress_bar("fetching", quiet=quiet)
        task = bar.add_task("fetch", total=None)
        with bar:
            reports = await fetch_sources(
                app,
                only_due=True,
                progress=lambda n, total, _: bar.update(task, completed=n, total=total),
            )
        fetch = {
            "sources": len(reports),
            "failed": sum(1 for r in reports if r.failed),
            "new_entries": sum(r.new for r in reports),
        }
    plan = await asyncio.to_thread(plan_due, app)
    with SendProgress(app, quiet=quiet) as progress:
        sent = await send_due(app, worker_id=new_worker_id(), progress=progress)
    return fetch, plan, sent


def _poll_inbound_once(app: AppContext) -> tuple[dict[str, Any] | None, str | None]:
    """One poll of DIGESTD_INBOUND_IMAP for `run --once` (cron users have no daemon to poll):
    (what it did, None), or (None, why it failed); (None, None) when no mailbox is set."""
    if app.settings.imap is None:
        return None, None
    from digestd.inbound.imap_poll import poll_configured_mailbox

    try:
        report = poll_configured_mailbox(app)
    except Exception as exc:  # the mailbox or the database: one line, sending already done
        return None, first_line(exc)
    return dataclasses.asdict(report), None


def register(app: typer.Typer) -> None:
    """Add `run` and `send-now` to the root app."""

    @app.command("run")
    def run(
        ctx: typer.Context,
        once: bool = typer.Option(
            False,
            "--once",
            help="Ingest due sources, plan, send what is due, poll the inbound mailbox, exit.",
        ),
        no_ingest: bool = typer.Option(False, "--no-ingest", help="Skip fetching sources."),
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
        quiet: bool = QuietOpt,
    ) -> None:
        """Run digestd: with --once a single pass (for cron); without, the daemon."""
        if not once:
            from digestd.daemon import DaemonStartError, run_forever

            try:
                raise typer.Exit(asyncio.run(run_forever(get_context(ctx))))
            except DaemonStartError as exc:
                fail(str(exc))
        context = get_context(ctx)
        try:
            fetch, plan, sent = asyncio.run(_once(context, ingest=not no_ingest, quiet=quiet))
        except Exception as exc:
            code = EX_TEMPFAIL if temporary(exc) else EX_PROBLEM
            fail(f"run --once: {first_line(exc)}", code)
        inbound, inbound_problem = _poll_inbound_once(context)
        if as_json:
            report = _report_dict(plan, sent, fetch)
            if inbound is not None or inbound_problem:
                report["inbound_imap"] = {**(inbound or {}), "problem": inbound_problem}
            print_json(report)
            exit_for(sent)
            return
        fetched = None
        if fetch is not None:
            fetched = (
                f"fetched {fetch['sources']} source(s), {fetch['new_entries']} new entries"
                + (f", {fetch['failed']} failed" if fetch["failed"] else "")
            )
        console.print(_summary(plan, sent, fetched), highlight=False)
        if inbound is not None:
            console.print(
                f"inbound mailbox: handled {inbound['handled']} (moved {inbound['moved']}, "
                f"left {inbound['left']}, {inbound['waiting']} waiting for the next run)",
                highlight=False,
            )
        echo_problem(sent)
        if inbound_problem:
            typer.echo(f"problem: inbound mailbox: {inbound_problem}", err=True)
        exit_for(sent)

    @app.command("send-now")
    def send_now(
        ctx: typer.Context,
        emails: list[str] = typer.Argument(None, help="Addresses to send to now."),
        all_: bool = typer.Option(False, "--all", help="Every active subscriber."),
        again: bool = typer.Option(
            False,
            "--again",
            help="Send each EMAIL's last digest again (same papers and window, a new"
            " Message-ID): for a digest that never arrived.",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
        quiet: bool = QuietOpt,
    ) -> None:
        """Plan and send the current period's digest now, regardless of the hour."""
        if bool(emails) == all_:
            usage("give one or more EMAIL addresses, or --all (not both)")
        if again and all_:
            usage("--again takes EMAIL addresses, not --all")
        context = get_context(ctx)
        if again:
            from digestd.cli.common import find_subscriber
            from digestd.cli.resend import latest_sent, plan_resends, send_resends
            from digestd.core.db import session_scope

            with session_scope(context.engine) as session:
                ids = [latest_sent(session, find_subscriber(session, e)) for e in emails]
                planned = plan_resends(session, context, ids)
            send_resends(context, planned, quiet=quiet, as_json=as_json)
            return
        wanted = None
        if emails:
            from digestd.subscribers.preferences import InvalidInput, normalize_email

            try:
                wanted = [normalize_email(e) for e in emails]
            except InvalidInput as exc:
                fail(str(exc))

        async def go() -> tuple[PlanReport, SendReport]:
            from digestd.delivery.sending import send_due

            plan = await asyncio.to_thread(plan_due, context, force=True, emails=wanted)
            with SendProgress(context, quiet=quiet) as progress:
                return plan, await send_due(context, worker_id=new_worker_id(), progress=progress)

        try:
            plan, sent = asyncio.run(go())
        except Exception as exc:
            fail(f"send-now: {first_line(exc)}", EX_TEMPFAIL if temporary(exc) else EX_PROBLEM)
        if as_json:
            print_json(_report_dict(plan, sent))
        else:
            console.print(_summary(plan, sent), highlight=False)
            if emails and plan.existing:
                # A reader whose digest never arrived: say how to resend it, not just "planned".
                console.print(
                    f"{plan.existing} already had this period's digest (not sent twice); to"
                    " send it again: digestd send-now EMAIL --again",
                    highlight=False,
                )
            echo_problem(sent)
        if plan.unknown:
            fail(f"no active subscriber with address: {', '.join(plan.unknown)}")
        exit_for(sent)
