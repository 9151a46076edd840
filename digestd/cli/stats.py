"""`digestd stats`: the list at a glance in 80 columns (figures from digestd.reporting.stats)."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from datetime import date

import typer
from rich.text import Text

from digestd.cli.common import console, get_context, print_json, short_time
from digestd.cli.tables import Column, layout
from digestd.core.db import session_scope
from digestd.reporting.stats import SERIES, Day, Rate, Stats, compute, percent, series_value, total

WIDTH = 80
LABEL = 2 + max(len(label) for _, label in SERIES) + 1  # the label column of chart lines
TOTAL = 10  # the right-hand total column
CHART = WIDTH - LABEL - TOTAL - 2  # room for the day columns
BLOCKS = " ▁▂▃▄▅▆▇█"  # a column's height in eighths (blank: nothing that day)
PARTIAL = " ▏▎▍▌▋▊▉"  # a horizontal bar's last cell in eighths
STYLE = {
    "sent": "green",
    "failed": "red",
    "hard_bounces": "red",
    "soft_bounces": "yellow",
    "relay_failures": "magenta",
    "complaints": "red",
    "new_confirmed": "cyan",
}
LEVEL_STYLE = {"ok": "green", "near": "yellow", "over": "bold red"}
HEALTH_STYLE = {"ok": "green", "failing": "red", "stale": "yellow", "never fetched": "yellow"}


def register(app: typer.Typer) -> None:
    """Add `digestd stats` to the root command."""
    app.command("stats")(stats_cmd)


def stats_cmd(
    ctx: typer.Context,
    days: int = typer.Option(14, "--days", min=1, max=366, help="How many days, today included."),
    as_json: bool = typer.Option(False, "--json", help="The same figures as JSON, for scripts."),
    wide: bool = typer.Option(
        False, "--wide", help="The source table with every column, one line a source."
    ),
) -> None:
    """Subscribers, deliveries, bounces, complaints and unsubscribes per day; sender limits."""
    app_ctx = get_context(ctx)
    with session_scope(app_ctx.engine) as session:
        figures = compute(
            session,
            app_ctx.now(),
            days=days,
            fetch_interval_minutes=app_ctx.settings.fetch_interval_minutes,
        )
    if as_json:
        print_json(figures.as_json())
        return
    for line in draw(figures, wide=wide):
        console.print(line, soft_wrap=True, highlight=False)


def draw(stats: Stats, *, wide: bool = False) -> list[Text]:
    """The dashboard as lines of at most 80 columns (`wide`: the source table unwrapped)."""
    title = f"digestd stats: {stats.start.isoformat()} to {stats.end.isoformat()} (UTC)"
    lines = [Text(title, style="bold"), Text("")]
    lines += _subscribers(stats.subscribers)
    lines.append(Text(""))
    lines += _per_day(stats.days)
    lines.append(Text(""))
    lines += _rates(stats)
    lines.append(Text(""))
    lines += _sources(stats, wide=wide)
    lines.append(Text(""))
    lines += _oldest(stats)
    return lines


def _bar(value: int, largest: int, width: int) -> str:
    """A horizontal bar of `width` cells at most, in eighths of a cell."""
    if value <= 0 or largest <= 0:
        return ""
    eighths = max(1, round(value / largest * width * 8))
    return "█" * (eighths // 8) + PARTIAL[eighths % 8].strip()


def _subscribers(counts: dict[str, int]) -> list[Text]:
    everyone = sum(counts.values())
    lines = [Text(f"subscribers ({everyone:,})", style="bold")]
    largest = max(counts.values(), default=0)
    for status, n in counts.items():
        line = Text(f"  {status:<13}{n:>9,}  ")
        line.append(_bar(n, largest, WIDTH - len(line)), style="cyan")
        lines.append(line)
    return lines


def _buckets(days: Sequence[Day]) -> tuple[list[Day], int, int]:
    """Days grouped so the chart fits: (groups, days per column, cells per column)."""
    per = max(1, math.ceil(len(days) / CHART))
    groups = [total(days[i : i + per]) for i in range(0, len(days), per)]
    cells = max(1, min(6, CHART // len(groups)))
    return groups, per, cells


def _column(value: int, largest: int) -> str:
    if value <= 0 or largest <= 0:
        return " "
    return BLOCKS[max(1, round(value / largest * 8))]


def _per_day(days: Sequence[Day]) -> list[Text]:
    groups, per, cells = _buckets(days)
    span = len(groups) * cells
    unit = "day" if per == 1 else f"{per} days"
    lines = [Text(f"per day (one column: {unit}; height: share of the series' busiest)")]
    lines[0].stylize("bold", 0, 7)
    for key, label in SERIES:
        values = [series_value(g, key) for g in groups]
        largest = max(values, default=0)
        line = Text(f"  {label:<{LABEL - 2}}")
        line.append("".join(_column(v, largest) * cells for v in values), style=STYLE.get(key, ""))
        line.append(" " * (CHART - span) + f"  {sum(values):>{TOTAL},}")
        lines.append(line)
    lines.append(
        Text(" " * LABEL + _axis(days[0].day, days[-1].day, span) + f"  {'total':>{TOTAL}}")
    )
    return lines


def _axis(first: date, last: date, span: int) -> str:
    """The first and last day under the chart (shortened to fit)."""
    left, right = first.strftime("%m-%d"), last.strftime("%m-%d")
    if span < len(left) + len(right) + 1:
        return (left if span >= len(left) else "")[:span].ljust(CHART)
    return (left + right.rjust(span - len(left))).ljust(CHART)


def _rate_line(label: str, rate: Rate, what: str) -> Text:
    limit = f"limit {percent(rate.limit)}"
    if rate.aim is not None:
        limit += f", aim {percent(rate.aim)}"
    facts = f"({rate.count:,} of {rate.of:,} {what})"
    line = Text(f"  {label:<11}{percent(rate.rate):>8}  {facts:<26}{limit:<27}")
    line.append(rate.level, style=LEVEL_STYLE[rate.level])
    return line


def _rates(stats: Stats) -> list[Text]:
    lines = [Text("rates of the period", style="bold")]
    lines.append(_rate_line("bounces", stats.bounces, "attempted"))
    lines.append(_rate_line("complaints", stats.complaints, "sent"))
    totals = stats.totals
    if totals.relay_failures or totals.unmatched_bounces:
        apart = (
            f"  not the list's, not in the bounce rate: {totals.relay_failures:,} relay "
            f"failures (ours), {totals.unmatched_bounces:,} bounces matching no subscriber"
        )
        for part in textwrap.wrap(apart, WIDTH, subsequent_indent="    "):
            lines.append(Text(part, style="dim"))
    for warning in stats.warnings:
        for part in textwrap.wrap(f"warning: {warning}", WIDTH, subsequent_indent="  "):
            lines.append(Text(part, style="bold yellow"))
    return lines


def _sources(stats: Stats, *, wide: bool = False) -> list[Text]:
    """Source health as a table at 80 columns: ids and health whole, the name wrapped
    between words in the last column (never cut)."""
    lines = [Text("sources", style="bold")]
    if not stats.sources:
        lines.append(Text("  none yet: add one with `digestd sources add URL`"))
        return lines
    columns = [
        Column("id", keep=True, right=True),
        Column("health", keep=True),
        Column("last fetch", priority=2),
        Column("fails", priority=1, right=True),
        Column("name", keep=True, wrap=True),
    ]
    rows = [
        [f"#{s.id}", s.health, short_time(s.last_fetch_at), str(s.failures), s.name]
        for s in stats.sources
    ]
    table, left_out = layout(columns, rows, total=WIDTH - 2, wide=wide)
    for n, row in enumerate(table):
        line = Text("  " + row, style="bold" if n == 0 else "")
        if n:
            for health, style in HEALTH_STYLE.items():
                line.highlight_words([f"  {health}  "], style=style)
        lines.append(line)
    if left_out:
        lines.append(Text(f"  (not shown at this width: {', '.join(left_out)}; see --wide)"))
    return lines


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {rest // 60}m" if hours else f"{rest // 60}m"


def _oldest(stats: Stats) -> list[Text]:
    w = stats.oldest_due
    if w is None:
        return [Text("oldest due delivery: none waiting", style="bold")]
    head = Text("oldest due delivery: ", style="bold")
    head.append(f"#{w.id}, waiting {_duration(w.waiting_seconds)} (due {short_time(w.due_at)})")
    tries = f"{w.attempts} attempt{'s' if w.attempts != 1 else ''}"
    detail = f"  {w.email}, {w.period}, {w.status}, {tries}"
    if w.error:
        detail += f": {' '.join(w.error.split())}"
    # Wrapped between words, never cut: the reply is what the admin came for.
    wrapped = textwrap.wrap(
        detail, WIDTH, subsequent_indent="    ", break_long_words=False, break_on_hyphens=False
    )
    return [head, *(Text(line) for line in wrapped)]
