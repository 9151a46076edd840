"""`digestd subscribers show EMAIL`: one subscriber's whole story in one place (issue 27):
the profile, the consent record, the status history, the last digests (date, status,
papers, the server's reply), the mail that came back about them, votes and liked papers;
each section short and at 80 columns. `--json` is the subscriber core's view
(`listing.show`: `email`, `status`, `stopped_by`, `consent`, `may_mail`, …, `events`,
`votes`) with `deliveries` and `inbound` added (`story`)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import typer

from digestd.cli.common import console, fail, get_context, print_json, short_time
from digestd.cli.story import print_story, story
from digestd.cli.tables import Column, print_facts, print_table
from digestd.core.db import read_scope
from digestd.subscribers import listing
from digestd.subscribers.preferences import InvalidInput

SHORT_HISTORY = 8  # events shown at 80 columns (--wide and --json: the last 20)

# The profile's fields in the order shown (the rest of the view is in --json).
PROFILE = (
    "email",
    "name",
    "status",
    "may_mail",
    "stopped_by",
    "stopped_at",
    "suppressed",
    "bounce_count",
    "topics",
    "categories",
    "follows",
    "muted_authors",
    "frequency",
    "send_hour",
    "send_weekday",
    "timezone",
    "max_items",
    "format",
    "created_at",
    "confirmed_at",
    "unsubscribed_at",
)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    if isinstance(value, str) and len(value) >= 19 and value[10:11] == "T":
        try:
            return short_time(datetime.fromisoformat(value)) + " UTC"
        except ValueError:
            return value
    return str(value)


def _detail(detail: dict[str, Any]) -> str:
    """An event's detail as `key value` words (wraps between words, unlike JSON)."""
    parts = []
    for key, value in sorted(detail.items()):
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        parts.append(f"{key} {shown}")
    return "; ".join(parts)


def register(app: typer.Typer) -> None:
    """Add `show` to the `subscribers` group."""

    @app.command("show")
    def show_cmd(
        ctx: typer.Context,
        email: str = typer.Argument(..., help="The subscriber's address."),
        as_json: bool = typer.Option(
            False, "--json", help="Stable JSON output (sorted keys) for scripts."
        ),
        wide: bool = typer.Option(
            False, "--wide", help="Every column of each section, one line a row; 20 events."
        ),
    ) -> None:
        """One subscriber's story: profile, consent, history, deliveries, mail, votes."""
        app_ctx = get_context(ctx)
        try:
            shown = listing.show(app_ctx, email)
        except InvalidInput as exc:
            fail(str(exc))
        with read_scope(app_ctx.engine) as session:
            shown.update(story(session, shown["id"]))
        if as_json:
            print_json(shown)
            return
        data = shown["subscriber"]
        print_facts([(key, _cell(data.get(key))) for key in PROFILE])
        consent = data.get("consent") or {}
        if consent:
            console.print("consent", style="bold", highlight=False)
            print_facts([(key, _cell(value)) for key, value in consent.items()])
        events = shown["events"]
        listed = events if wide else events[:SHORT_HISTORY]
        title = "history (newest first)"
        if len(listed) < len(events):
            title = (
                f"history (newest first, {len(listed)} of the last {len(events)}; all with"
                " --wide or --json)"
            )
        console.print(title if events else "history: none", style="bold", highlight=False)
        if events:
            print_table(
                [
                    Column("at", keep=True),
                    Column("action", keep=True),
                    Column("by", priority=1),
                    Column("detail", wrap=True, priority=2),
                ],
                [
                    [
                        _cell(e["at"]).removesuffix(" UTC"),
                        e["action"],
                        e["actor"],
                        _detail(e["detail"]),
                    ]
                    for e in listed
                ],
                wide=wide,
                more="--wide or --json",
            )
        print_story(shown, wide=wide)
        voted = shown["votes"]
        console.print(
            "liked papers and votes (newest first)" if voted else "votes: none",
            style="bold",
            highlight=False,
        )
        if voted:
            print_table(
                [
                    Column("at", priority=1),
                    Column("vote", keep=True),
                    Column("paper", keep=True),
                    Column("title", wrap=True, priority=2),
                ],
                [
                    [_cell(v["at"]).removesuffix(" UTC"), v["vote"], str(v["paper"]), v["title"]]
                    for v in voted
                ],
                wide=wide,
                more="--wide or --json",
            )
