"""The real `digestd` process: help, settings errors, a subscriber session as an admin runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer.main

from digestd.cli.main import app as cli_app
from digestd.subscribers.csv_io import COLUMNS
from tests.support.cli import run_cli as run_cli_in_process
from tests.support.cli import run_cli_process as run_cli


def test_help_lists_every_command_group(tmp_path: Path) -> None:
    result = run_cli("--help", env={}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    names = sorted(typer.main.get_command(cli_app).commands)  # type: ignore[attr-defined]
    assert {"db", "subscribers", "sources"} <= set(names)
    for name in names:
        assert f" {name} " in result.stdout, name
    sub = run_cli("subscribers", "--help", env={}, cwd=tmp_path)
    for command in (
        "add",
        "list",
        "show",
        "update",
        "suspend",
        "resume",
        "remove",
        "import",
        "export",
    ):
        assert f" {command} " in sub.stdout, command


def test_settings_error_is_one_line_and_exit_1(tmp_path: Path) -> None:
    env = {"DIGESTD_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "DIGESTD_SMTP_PORT": "abc"}
    result = run_cli("subscribers", "list", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: DIGESTD_SMTP_PORT must be a whole number, got 'abc'"
    ]
    assert result.stdout == ""


def test_admin_session_in_a_real_process(sqlite_url: str, tmp_path: Path) -> None:
    env = {"DIGESTD_DATABASE_URL": sqlite_url}  # both backends are covered in-process
    added = run_cli("subscribers", "add", "Proc@Example.org", "--confirmed", env=env, cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text(
        ",".join(COLUMNS) + "\n"
        "ok@example.org,,,,daily,8,UTC,10,html,active\n"
        "proc@example.org,,,,daily,8,UTC,10,html,active\n"
        "x@example.org,,,,daily,8,UTC,500,html,active\n",
        encoding="utf-8",
    )
    result = run_cli("subscribers", "import", str(bad), env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{bad}: line 3: proc@example.org already exists (use --update-existing to update it)",
        f"{bad}: line 4: max items must be between 1 and 100, got 500",
        f"error: {bad}: 2 bad rows: nothing imported",
    ]
    exported = run_cli("subscribers", "export", env=env, cwd=tmp_path)
    assert exported.stdout.splitlines() == [
        ",".join(COLUMNS),
        "proc@example.org,,,,daily,8,UTC,10,html,active",
    ]


def test_forget_asks_first_on_a_terminal(sqlite_url: str, tmp_path: Path) -> None:
    """`remove --forget` erases for good: at a terminal it asks (no: nothing erased, exit
    1); `--yes` skips the question; a script (no terminal) is not asked."""
    from tests.support.terminal import run_in_terminal

    env = {"DIGESTD_DATABASE_URL": sqlite_url}
    for who in ("keep@example.org", "go@example.org"):
        assert run_cli_in_process("subscribers", "add", who, env=env).returncode == 0
    code, screen = run_in_terminal(
        "subscribers", "remove", "keep@example.org", "--forget", env=env, typed="n\n"
    )
    assert code == 1 and "erase keep@example.org for good" in screen, screen
    assert "nothing erased" in screen
    assert run_cli_in_process("subscribers", "show", "keep@example.org", env=env).returncode == 0
    code, screen = run_in_terminal(
        "subscribers", "remove", "go@example.org", "--forget", "--yes", env=env
    )
    assert code == 0 and "forgot go@example.org" in screen and "?" not in screen, screen
    piped = run_cli("subscribers", "remove", "keep@example.org", "--forget", env=env, input="")
    assert piped.returncode == 0 and "forgot keep@example.org" in piped.stdout


def test_the_installed_console_script_exits_2_on_a_usage_mistake(tmp_path: Path) -> None:
    """`digestd` as installed (the console script, not `python -m`): its exit code and one line."""
    script = Path(sys.executable).with_name("digestd")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DIGESTD_")}
    clean["DIGESTD_DATABASE_URL"] = f"sqlite:///{tmp_path / 'x.db'}"
    result = subprocess.run(
        [str(script), "subscribers", "list", "--nope"],
        env=clean,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result  # EX_USAGE, as for every usage mistake
    assert result.stderr.splitlines() == [
        "error: No such option: --nope (see 'digestd subscribers list --help')"
    ]
    ok = subprocess.run(
        [str(script), "--version"], env=clean, capture_output=True, text=True, timeout=120
    )
    assert ok.returncode == 0 and ok.stdout.startswith("digestd "), ok
