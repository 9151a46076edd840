"""`--help` shows what each option takes (a flag no placeholder, a number `<int>`), every
option of a command group, and usage mistakes exit 2 (issue 27). In-process."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import typer

from digestd.cli.main import app
from tests.support.subscribers import make_invoke


def _commands(group: Any, ctx: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name in getattr(group, "commands", {}):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        found += _commands(command, ctx, (*path, name))
    return found


def early_breaks(text: str) -> list[str]:
    """Lines of a help box broken before the box's edge although the next line's first word
    would have fit: the docstring's own line breaks kept ("…or the one" / "sent now")."""
    lines = text.splitlines()
    found = []
    for line, after in pairwise(lines):
        if not (line.startswith("│") and after.startswith("│")):
            continue
        body, rest = line.rstrip(" │"), after.strip(" │")
        indent = len(after) - len(after.lstrip("│ "))
        if not rest or indent < 4 or rest.startswith(("-", "[")):
            continue  # a new option or command, or its [default: …], not a sentence
        if len(body) + 1 + len(rest.split()[0]) <= len(line) - 2:
            found.append(line)
    return found


def test_every_help_shows_real_types(sqlite_url: str) -> None:
    invoke = make_invoke(sqlite_url, COLUMNS="80")
    root = typer.main.get_command(app)
    paths = _commands(root, root.make_context("digestd", [], resilient_parsing=True))
    assert ("sources", "disable") in paths and ("inbound", "show") in paths
    for path in paths:
        shown = invoke(*path, "--help")
        assert shown.exit_code == 0, (path, shown.output)
        assert "<bool>" not in shown.stdout, path
        usage = next(line for line in shown.stdout.splitlines() if "Usage:" in line)
        # Arguments named as the README writes them (EMAIL, ID), one ellipsis at most.
        assert not any(w.strip("[]{}.").islower() for w in usage.split()[3:] if "{" in w), usage
        assert "]...]" not in usage and "[[" not in usage and "...}" not in usage, usage
        assert not early_breaks(shown.stdout), (path, early_breaks(shown.stdout))
        assert max(len(line) for line in shown.stdout.splitlines()) <= 80, path
    limit = invoke("deliveries", "list", "--help").stdout
    assert "--limit" in limit and "<int>" in limit
    interval = invoke("sources", "set", "--help").stdout
    assert "MINUTES" in interval and "--allow-private" in interval
    group = invoke("inbound", "--help").stdout
    for option in ("--dry-run", "--json", "--listen", "--mail-from", "--rcpt-to"):
        assert option in group, option


def test_usage_mistakes_exit_2_and_problems_exit_1(sqlite_url: str) -> None:
    invoke = make_invoke(sqlite_url)
    assert invoke("deliveries", "list", "--limit", "many").exit_code == 2
    assert invoke("sources", "set", "1").exit_code == 2  # nothing to change
    assert invoke("send-now", "--all", "--again").exit_code == 2
    assert invoke("sources", "disable", "4").exit_code == 1  # no such source
    assert invoke("deliveries", "resend", "4").exit_code == 1  # no such delivery
