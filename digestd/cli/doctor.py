"""`digestd doctor`: check a setup before the first real send; exit 1 when a check fails."""

from __future__ import annotations

import typer
from rich.markup import escape

from digestd.cli.common import console, get_context, print_json

STYLE = {"ok": "green", "warn": "yellow", "fail": "red"}


def register(app: typer.Typer) -> None:
    """Add `doctor` to the root app."""

    @app.command("doctor")
    def doctor(
        ctx: typer.Context,
        as_json: bool = typer.Option(False, "--json", help="Stable JSON output for scripts."),
    ) -> None:
        """Check database, SMTP, web, secret key, sources and DNS (SPF, DMARC, DKIM, MX)."""
        from digestd.doctor import run_doctor

        checks = run_doctor(get_context(ctx, migrate=False))
        counts = {status: sum(1 for c in checks if c.status == status) for status in STYLE}
        if as_json:
            print_json({"checks": [c.as_json() for c in checks], **counts})
        else:
            for c in checks:
                style = STYLE[c.status]
                console.print(
                    f"[{style}]{c.status:<4}[/{style}]  {escape(c.name)}: {escape(c.detail)}",
                    highlight=False,
                    soft_wrap=True,
                )
                if c.fix:
                    console.print(f"      fix: {escape(c.fix)}", highlight=False, soft_wrap=True)
            console.print(
                f"{counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail", highlight=False
            )
        if counts["fail"]:
            raise typer.Exit(1)
