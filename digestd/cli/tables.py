"""Tables of the admin CLI laid out for the terminal (80 columns when not on one) by choosing
columns, never by cutting values.

Rules every table follows (issue 27):
- an id, a status, an address (any column marked `keep`) is printed whole, always;
- long text wraps at word boundaries, and only in the table's last column (`wrap`);
- a column that does not fit is left out (lowest `priority` first) and named under the
  table, with `--wide` (every column, nothing wrapped) or `show` to see it.

Laid out by hand rather than with rich's Table: rich shrinks every column once one is too
wide and folds values mid-word ("unchange / d"), which is what this replaces.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text

from digestd.cli.common import console, err_console

NARROW = 80  # the width when the output is not a terminal (a pipe, a file, cron)
MIN_WRAP = 24  # a wrapping column narrower than this reads badly: drop a column instead
GAP = 2  # spaces between columns
INDENT = "    "  # a last column's value too wide for it, printed under its row


@dataclass(frozen=True)
class Column:
    """One column: `keep` columns are never left out; `priority` orders the others (the
    lowest goes first); `wrap` (last column only) wraps long text at word boundaries;
    `right` aligns numbers."""

    header: str
    keep: bool = False
    priority: int = 0
    wrap: bool = False
    right: bool = False


def width() -> int:
    """The width every table is laid out in: 80 columns, whatever the terminal (an 80x24
    terminal is what the tables are made for; `--wide` is for the rest)."""
    return NARROW


def _one_line(value: str) -> str:
    return " ".join(value.split())


def _choose(
    columns: Sequence[Column], natural: list[int], total: int, wrap_at: int | None, room: int
) -> tuple[list[int], bool]:
    """(the columns shown, whether they fit `total`): the others left out lowest priority
    first, the wrapping column counted at `room` (at most its natural width)."""
    shown = list(range(len(columns)))

    def needed(keep: list[int]) -> int:
        fixed = sum(natural[i] for i in keep if i != wrap_at)
        if wrap_at is not None and wrap_at in keep:
            fixed += min(natural[wrap_at], max(MIN_WRAP, room))
        return fixed + GAP * (len(keep) - 1)

    droppable = sorted(
        (i for i, c in enumerate(columns) if not c.keep and i != wrap_at),
        key=lambda i: (columns[i].priority, -i),
    )
    while needed(shown) > total and droppable:
        shown.remove(droppable.pop(0))
    if wrap_at is not None and needed(shown) > total and not columns[wrap_at].keep:
        shown.remove(wrap_at)
    return shown, needed(shown) <= total


def layout(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], *, total: int, wide: bool = False
) -> tuple[list[str], list[str]]:
    """(the table's lines, headers of the columns left out) for `rows` in `total` columns."""
    cells = [[_one_line(str(v)) for v in row] for row in rows]
    natural = [max([len(c.header), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    shown = list(range(len(columns)))
    if not wide:
        wrap_at = len(columns) - 1 if columns and columns[-1].wrap else None
        shown, _ = _choose(columns, natural, total, wrap_at, MIN_WRAP)
        if wrap_at is not None:
            # Room for the wrapping column's longest word (an address in a reply), if
            # leaving columns out gives it; else that value goes under its row.
            longest = max((len(w) for r in cells for w in r[wrap_at].split()), default=0)
            roomy, fits = _choose(columns, natural, total, wrap_at, longest)
            if fits and wrap_at in roomy:
                shown = roomy
    widths = {i: natural[i] for i in shown}
    last = shown[-1] if shown else None
    if not wide and last is not None and columns[last].wrap:
        used = sum(widths[i] for i in shown if i != last) + GAP * (len(shown) - 1)
        widths[last] = max(min(natural[last], total - used), min(natural[last], MIN_WRAP))
    wraps = not wide and last is not None and columns[last].wrap

    def lines_of(values: Sequence[str]) -> list[str]:
        if (
            wraps
            and last is not None
            and max(map(len, values[last].split()), default=0) > widths[last]
        ):
            # A word wider than its column (a long path or address): the value goes under
            # the row, indented, wrapped in the whole width, rather than past the edge.
            head = lines_of([*values[:last], "", *values[last + 1 :]])
            under = textwrap.wrap(
                values[last],
                total,
                initial_indent=INDENT,
                subsequent_indent=INDENT,
                break_long_words=False,
                break_on_hyphens=False,
            )
            return head + under
        parts: list[list[str]] = []
        for i in shown:
            value = values[i]
            if i == last and wraps and len(value) > widths[i]:
                parts.append(
                    textwrap.wrap(value, widths[i], break_long_words=False, break_on_hyphens=False)
                    or [""]
                )
            else:
                parts.append([value])
        out = []
        for n in range(max(len(p) for p in parts)):
            line = []
            for i, p in zip(shown, parts, strict=True):
                value = p[n] if n < len(p) else ""
                w = widths[i]
                line.append(value.rjust(w) if columns[i].right else value.ljust(w))
            out.append((" " * GAP).join(line).rstrip())
        return out

    lines = lines_of([c.header for c in columns])
    for row in cells:
        lines += lines_of(row)
    left_out = [c.header for i, c in enumerate(columns) if i not in shown]
    return lines, left_out


def render(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    *,
    wide: bool = False,
    total: int | None = None,
    more: str = "--wide",
) -> str:
    """The table as text (header first), and a last line naming what was left out."""
    room = total or width()
    lines, left_out = layout(columns, rows, total=room, wide=wide)
    if left_out:
        note = f"(not shown at this width: {', '.join(left_out)}; see {more})"
        lines += textwrap.wrap(note, room, break_long_words=False, break_on_hyphens=False)
    return "\n".join(lines)


def print_table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    *,
    wide: bool = False,
    more: str = "--wide",
) -> None:
    """Print `render(...)`: the header in bold, values as they are (never read as markup)."""
    text = render(columns, rows, wide=wide, more=more)
    head, _, body = text.partition("\n")
    out = Text(head, style="bold")
    if body:
        out.append("\n" + body)
    console.print(out, soft_wrap=True, highlight=False, crop=False)


def print_facts(facts: Sequence[tuple[str, str]]) -> None:
    """`label  value` lines (a record's `show`): values wrap at word boundaries under
    themselves, never cut."""
    label_width = max((len(label) for label, _ in facts), default=0)
    room = max(MIN_WRAP, width() - label_width - GAP)
    out = Text()
    for label, value in facts:
        lines = textwrap.wrap(
            _one_line(value), room, break_long_words=False, break_on_hyphens=False
        ) or ["-"]
        out.append(label.ljust(label_width), style="bold")
        out.append(" " * GAP + lines[0] + "\n")
        for line in lines[1:]:
            out.append(" " * (label_width + GAP) + line + "\n")
    console.print(out, soft_wrap=True, highlight=False, crop=False, end="")


def say(text: str, *, err: bool = False, style: str = "") -> None:
    """A message (what a command did) in lines of 80 columns broken between words, so an
    80-column terminal never folds a word; a word wider than that (a URL, a path) stays
    whole on its own line, to be copied."""
    lines = textwrap.wrap(
        " ".join(text.split()),
        width(),
        subsequent_indent="  ",
        break_long_words=False,
        break_on_hyphens=False,
    )
    (err_console if err else console).print(
        Text("\n".join(lines), style=style), soft_wrap=True, highlight=False, crop=False
    )
