"""Run the real `digestd` command as an admin would: in this process (`run_cli`), or in a
new interpreter (`run_cli_process`) for what only a process shows.

`run_cli` calls the console script's own entry point (`digestd.cli.main:main`: usage errors
as one line, exit codes) with the same clean surroundings a subprocess gets: only the given
DIGESTD_* variables (no stray .env: the cwd is the one given), COLUMNS, NO_COLOR, the given
stdin. It saves a new interpreter, its imports and its migration check per call (about
three seconds each on a busy two-core machine). An exception that escapes the command is
raised in the test, where a subprocess would have printed a traceback and exited 1.

Kept as real processes: signals, the daemon (`run` without --once, `web`, `inbound --listen`:
they serve until stopped, so `run_cli` starts those in a process itself), the console
script and `python -m digestd` (tests/e2e/test_subscribers_subprocess.py, test_cli_usage.py).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from typer._click import formatting
from typer.testing import CliRunner

from digestd.cli import common
from digestd.cli.main import main

REPO = Path(__file__).resolve().parents[2]
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def build_commands_once() -> Callable[[], None]:
    """Typer turns the app into Click commands on every call (each option's signature and
    type hints read again: about 0.1 s a call here); a `digestd` process does it once. In a
    test process, where the CLI runs in process hundreds of times, each Typer app is
    converted once and its commands reused, as a process would. Returns the undo."""
    import typer.main
    import typer.testing

    original = typer.main.get_command
    built: dict[int, tuple[object, object]] = {}

    def get_command(typer_instance: typer.Typer) -> object:
        key = id(typer_instance)
        if key not in built:  # the instance is kept, so its id is never reused
            built[key] = (typer_instance, original(typer_instance))
        return built[key][1]

    typer.main.get_command = get_command  # type: ignore[assignment]
    typer.testing._get_command = get_command  # type: ignore[attr-defined]

    def undo() -> None:
        typer.main.get_command = original
        typer.testing._get_command = original  # type: ignore[attr-defined]

    return undo


def needs_a_process(args: tuple[str, ...]) -> bool:
    """Commands that serve until a signal stops them: in a test process they would take over
    its signals and never return."""
    if not args:
        return False
    command, rest = args[0], args[1:]
    if command == "run":
        return "--once" not in rest and "--help" not in rest
    if command == "web":
        return "--help" not in rest
    return command == "inbound" and "--listen" in rest


def run_cli(
    *args: str,
    env: Mapping[str, str],
    cwd: Path | str | None = None,
    input: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """`digestd ARGS` with only the given DIGESTD_* environment; in this process unless the
    command serves until stopped (then as `run_cli_process`)."""
    if needs_a_process(args):
        return run_cli_process(*args, env=env, cwd=cwd, input=input, timeout=timeout)
    with _isolated(env, cwd, input) as streams:
        code = _call_main(list(args))
        sys.stdout.flush()
        sys.stderr.flush()
        out, err = streams
        return subprocess.CompletedProcess(
            ["digestd", *args],
            code,
            out.getvalue().decode("utf-8", "replace"),
            err.getvalue().decode("utf-8", "replace"),
        )


def run_cli_process(
    *args: str,
    env: Mapping[str, str],
    cwd: Path | str | None = None,
    input: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """`python -m digestd ARGS` in a new interpreter with only the given DIGESTD_* environment."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DIGESTD_")}
    clean.update(env)
    # The terminal of whoever runs the tests (or pytest-xdist's COLUMNS=80) never decides a
    # table's width: 200 unless the test asks for another.
    clean["COLUMNS"] = env.get("COLUMNS", "200")
    clean["NO_COLOR"] = "1"
    # Import digestd from this checkout even when cwd is elsewhere (worktrees, tmp dirs).
    clean["PYTHONPATH"] = str(REPO) + os.pathsep + clean.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "digestd", *args],
        env=clean,
        cwd=cwd,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _call_main(args: list[str]) -> int:
    """The console script's entry point on `args`; its exit code (as the process's would be)."""
    saved_argv = sys.argv
    sys.argv = ["digestd", *args]
    try:
        main()
    except SystemExit as stop:
        if stop.code is None:
            return 0
        if isinstance(stop.code, int):
            return stop.code
        print(stop.code, file=sys.stderr)  # what the interpreter does with sys.exit("text")
        return 1
    finally:
        sys.argv = saved_argv
    return 0


@contextmanager
def _isolated(
    env: Mapping[str, str], cwd: Path | str | None, input: str | None
) -> Iterator[tuple[object, object]]:
    """The surroundings of a fresh `digestd` process, undone afterwards: environment, cwd,
    standard streams, logging (the CLI installs its handler and levels), signal handlers."""
    saved_environ = dict(os.environ)
    saved_cwd = os.getcwd()
    saved_signals = {sig: signal.getsignal(sig) for sig in SIGNALS}
    root = logging.getLogger()
    saved_handlers = list(root.handlers)
    saved_levels = {
        name: logger.level
        for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    saved_root_level = root.level
    # The CLI's rich consoles were made when digestd.cli was imported into this process: a
    # process's are made at its start, sized from COLUMNS and told NO_COLOR then. Here they
    # are sized at each print and never colour, as such a process's would be.
    consoles = (common.console, common.err_console)
    saved_consoles = [(c._width, c._height, c.no_color) for c in consoles]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DIGESTD_")}
    clean.update(env)
    # The terminal of whoever runs the tests (or pytest-xdist's COLUMNS=80) never decides a
    # table's width: 200 unless the test asks for another.
    clean["COLUMNS"] = env.get("COLUMNS", "200")
    clean["NO_COLOR"] = "1"
    try:
        os.environ.clear()
        os.environ.update(clean)
        if cwd is not None:
            os.chdir(cwd)
        for console in consoles:
            console._width = console._height = None
            console.no_color = True
        with CliRunner().isolation(input=input) as (out, err, _both):
            # The runner pins Click's help width to 80; a process sizes it from the terminal.
            formatting.FORCED_WIDTH = None
            yield out, err
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_environ)
        for sig, handler in saved_signals.items():
            signal.signal(sig, handler)
        for console, (width, height, no_color) in zip(consoles, saved_consoles, strict=True):
            console._width, console._height, console.no_color = width, height, no_color
        root.handlers[:] = saved_handlers
        root.setLevel(saved_root_level)
        for name, logger in logging.Logger.manager.loggerDict.items():
            level = saved_levels.get(name, logging.NOTSET)
            if isinstance(logger, logging.Logger) and logger.level != level:
                logger.setLevel(level)
