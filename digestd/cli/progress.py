"""Progress bars for long commands: on a terminal only, never under cron or in a pipe.

Bars go to stderr and are transient (erased when done), so stdout stays exactly what
scripts read, and a terminal ends with the same summary line as a log file.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from digestd.cli.common import err_console
from digestd.core.context import AppContext
from digestd.core.db import session_scope

if TYPE_CHECKING:
    from digestd.delivery.sending import SendReport

QuietOpt = typer.Option(
    False, "--quiet", "-q", help="No progress bar (there is none off a terminal)."
)


def interactive() -> bool:
    """True when a person watches stderr: a real terminal, not a pipe, a file or cron."""
    stream = sys.stderr
    return bool(
        getattr(stream, "isatty", lambda: False)()
        and err_console.is_terminal
        and not err_console.is_dumb_terminal
    )


def progress_bar(label: str, *columns: ProgressColumn | str, quiet: bool = False) -> Progress:
    """A transient bar on stderr, disabled by --quiet and whenever no terminal is attached."""
    return Progress(
        TextColumn(label),
        BarColumn(),
        *(columns or (MofNCompleteColumn(),)),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=quiet or not interactive(),
    )


class SendProgress:
    """A bar for a send pass: its total is what is due when sending starts (read only when a
    bar is shown); it moves as outcomes are recorded. Pass it as `send_due(progress=…)`."""

    def __init__(self, ctx: AppContext, *, quiet: bool = False) -> None:
        self.ctx = ctx
        self.bar = progress_bar("sending", quiet=quiet)
        self.task: TaskID | None = None

    def __enter__(self) -> SendProgress:
        if not self.bar.disable:
            from digestd.delivery.deliveries import waiting

            with session_scope(self.ctx.engine) as session:
                due, _ = waiting(session, self.ctx.now())
            self.task = self.bar.add_task("send", total=due)
            self.bar.start()
        return self

    def __call__(self, report: SendReport) -> None:
        if self.task is not None:
            done = report.sent + report.retry + report.failed + report.skipped
            self.bar.update(self.task, completed=done)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.bar.stop()


class CountingWriter:
    """A text stream that advances a bar once per CSV row written (csv.writer writes each row
    with one `write` call), so the CSV code needs no progress hook."""

    def __init__(self, out: Any, advance: Any) -> None:
        self.out = out
        self.advance = advance

    def write(self, text: str) -> int:
        written = self.out.write(text)
        self.advance()
        return int(written or 0)
