"""`digestd demo`: the whole pipeline on seed data, mail saved as files, no configuration."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from digestd.cli.common import console, fail, first_line
from digestd.cli.tables import Column, print_table


def register(app: typer.Typer) -> None:
    """Add `demo` to the root app."""

    @app.command("demo")
    def demo(
        database: Path = typer.Option(
            None,
            "--database",
            help="Use this SQLite file instead of a fresh ./digestd-demo.db (kept as it is).",
        ),
    ) -> None:
        """Ingest the seed papers, mail one digest to each demo subscriber into ./outbox/."""
        from digestd.demo import run_demo

        try:
            result = asyncio.run(run_demo(Path.cwd(), database))
        except Exception as exc:
            fail(f"demo: {first_line(exc)}")
        console.print("digestd demo", style="bold", highlight=False)
        print_table(
            [
                Column("subscriber", keep=True),
                Column("status", keep=True),
                Column("papers", keep=True, right=True),
                Column("top paper", wrap=True, priority=1),
            ],
            [[row.email, row.status, str(row.papers), row.top_paper] for row in result.rows],
        )
        where = (
            result.outbox.relative_to(Path.cwd())
            if result.outbox.is_relative_to(Path.cwd())
            else result.outbox
        )
        console.print(
            f"{len(result.eml_files)} messages saved as .eml files in {where}/ "
            f"({result.new_entries} papers ingested, {result.seconds:.1f} s)",
            highlight=False,
        )
        if result.html_file is not None:
            console.print(f"open in a browser: {result.html_file}", highlight=False, soft_wrap=True)
        if result.reset:
            console.print(
                f"database: {result.database.name} (reset on every run, so each run sends again)",
                highlight=False,
            )
        else:
            console.print(
                f"database: {result.database} (kept; a subscriber already sent this period's "
                "digest is not sent again)",
                highlight=False,
                soft_wrap=True,
            )
        if not result.eml_files:
            fail("no message was sent")
