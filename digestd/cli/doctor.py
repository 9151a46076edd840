"""`digestd doctor`: check a setup before the first real send; exit 1 when a check fails."""

from __future__ import annotations

import textwrap

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
                # 80 columns, wrapped at word boundaries (a long word, a URL, stays whole).
                head, *rest = _wrap(f"{c.status:<4}  {c.name}: {c.detail}", "      ")
                console.print(
                    f"[{style}]{c.status:<4}[/{style}]{escape(head[4:])}",
                    highlight=False,
                    soft_wrap=True,
                )
                for line in rest:
                    console.print(escape(line), highlight=False, soft_wrap=True)
                if c.fix:
                    for line in _wrap(f"      fix: {c.fix}", "           "):
                        console.print(escape(line), highlight=False, soft_wrap=True)
            console.print(
                f"{counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail", highlight=False
            )
        if counts["fail"]:
            raise typer.Exit(1)


def _wrap(text: str, indent: str) -> list[str]:
    """`text` in lines of 80 columns, broken between words, continued with `indent`."""
    return textwrap.wrap(
        text,
        80,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
        drop_whitespace=True,
    ) or [text]
