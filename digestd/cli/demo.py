"""`digestd demo`: the whole pipeline on seed data, mail saved as files, no configuration."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer

from digestd.cli.common import console, fail, first_line, print_json
from digestd.cli.tables import Column, print_table


def _as_json(result: Any) -> dict[str, Any]:
    """The demo's outcome for scripts: each subscriber's digest, and where the files are."""
    return {
        "subscribers": [
            {"email": r.email, "status": r.status, "papers": r.papers, "top_paper": r.top_paper}
            for r in result.rows
        ],
        "eml_files": [str(f) for f in result.eml_files],
        "html_file": str(result.html_file) if result.html_file else None,
        "database": str(result.database),
        "reset": result.reset,
        "new_entries": result.new_entries,
        "seconds": round(result.seconds, 1),
    }


def register(app: typer.Typer) -> None:
    """Add `demo` to the root app."""

    @app.command("demo")
    def demo(
        database: Path = typer.Option(
            None,
            "--database",
            help="Use this SQLite file instead of a fresh ./digestd-demo.db (kept as it is).",
        ),
        wide: bool = typer.Option(False, "--wide", help="Each subscriber on one line."),
        as_json: bool = typer.Option(False, "--json", help="What was sent, as JSON for scripts."),
    ) -> None:
        """Ingest the seed papers, mail one digest to each demo subscriber into ./outbox/."""
        from digestd.demo import run_demo

        try:
            result = asyncio.run(run_demo(Path.cwd(), database))
        except Exception as exc:
            fail(f"demo: {first_line(exc)}")
        if as_json:
            print_json(_as_json(result))
            if not result.eml_files:
                fail("no message was sent")
            return
        console.print("digestd demo", style="bold", highlight=False)
        print_table(
            [
                Column("subscriber", keep=True),
                Column("status", keep=True),
                Column("papers", keep=True, right=True),
                Column("top paper", wrap=True, priority=1),
            ],
            [[row.email, row.status, str(row.papers), row.top_paper] for row in result.rows],
            wide=wide,
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
