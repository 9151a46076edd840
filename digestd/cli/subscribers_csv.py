"""`digestd subscribers import` and `export`: CSV in and out (the format and the rules are
`digestd.subscribers.csv_io` and `.importing`)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.progress import DownloadColumn, MofNCompleteColumn

from digestd.cli.common import console, err_console, fail, get_context, status_option, usage
from digestd.cli.progress import CountingWriter, QuietOpt, progress_bar
from digestd.subscribers import importing
from digestd.subscribers.importing import ImportOptions, ImportRejected


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
    skip_invalid: bool = typer.Option(
        False,
        "--skip-invalid",
        help="Import the good rows and write the bad ones, with their problems, to a CSV "
        "beside the input (FILE.rejects.csv) instead of importing nothing.",
    ),
    rejects: Path | None = typer.Option(
        None, "--rejects", help="Where --skip-invalid writes the rejected rows."
    ),
    raw: bool = typer.Option(
        False,
        "--raw",
        help="Take cells as they are (a file from `export --raw`); without it the `'` that "
        "`export` puts before formula-like cells is removed.",
    ),
    quiet: bool = QuietOpt,
) -> None:
    """Import subscribers from CSV: all rows or none (every bad row listed by line), or with
    --skip-invalid the good ones."""
    if not file.is_file():
        fail(f"{file}: no such file")
    if rejects is not None and not skip_invalid:
        usage("--rejects goes with --skip-invalid")
    app_ctx = get_context(ctx)
    options = ImportOptions(
        update_existing=update_existing,
        ignore_unknown_columns=ignore_unknown_columns,
        dry_run=dry_run,
        skip_invalid=skip_invalid,
        rejects=rejects,
        raw=raw,
        batch_size=app_ctx.settings.batch_size if app_ctx.settings.batch_size > 1 else 1000,
    )
    progress = progress_bar("importing", DownloadColumn(), quiet=quiet)
    task = progress.add_task("import", total=file.stat().st_size)
    try:
        with progress:
            report = importing.import_file(
                app_ctx, file, options, on_bytes=lambda n: progress.advance(task, n)
            )
    except ImportRejected as exc:
        for line in exc.report.errors:
            err_console.print(f"{file}: {line}", highlight=False, markup=False, soft_wrap=True)
        fail(f"{escape(str(file))}: {escape(str(exc))}")
    except OSError as exc:
        fail(f"{exc.filename or file}: {exc.strerror or exc}")
    prefix = "dry run, nothing written: would add" if dry_run else "added"
    rejected = f", rejected {report.rejected}" if skip_invalid else ""
    console.print(
        f"{prefix} {report.added}, "
        f"{'would update' if dry_run else 'updated'} {report.updated}, "
        f"unchanged {report.unchanged}{rejected} ({report.rows} rows in "
        f"{report.seconds:.2f}s, {report.rows_per_second:,.0f} rows/s)",
        highlight=False,
    )
    if report.ignored_columns:
        skipped = ", ".join(report.ignored_columns)
        console.print(f"columns not imported: {escape(skipped)}", highlight=False)
    if skip_invalid and report.errors:
        for line in report.errors:
            err_console.print(f"{file}: {line}", highlight=False, markup=False, soft_wrap=True)
        if report.rejects_path is not None:
            console.print(
                f"rejected rows written to {escape(str(report.rejects_path))}", highlight=False
            )


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
    wanted = status_option(status)
    app_ctx = get_context(ctx)
    progress = progress_bar("exporting", MofNCompleteColumn(), quiet=quiet)
    with progress:
        if not progress.disable:
            total = importing.count(app_ctx, wanted)
            task = progress.add_task("export", total=total + 1)  # + the header line

        def counted(out: Any) -> Any:
            return out if progress.disable else CountingWriter(out, lambda: progress.advance(task))

        if file is None:
            importing.export(app_ctx, counted(sys.stdout), status=wanted, raw=raw)
            return
        # Write next to the target and rename: a failed export never leaves half a file.
        directory = file.resolve().parent
        if not directory.is_dir():
            fail(f"{file}: directory {directory} does not exist")
        fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
                count = importing.export(app_ctx, counted(out), status=wanted, raw=raw)
            os.replace(tmp, file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    console.print(f"exported {count} subscribers to {escape(str(file))}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `import` and `export` to the `subscribers` command group."""
    app.command("import")(import_cmd)
    app.command("export")(export_cmd)
