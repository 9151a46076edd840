"""Helpers for the subscriber CLI tests: run the real typer app in-process on a given database."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from click.testing import Result
from typer.testing import CliRunner

from digestd.cli.main import app

Invoke = Callable[..., Result]


def make_invoke(db_url: str, **extra_env: str) -> Invoke:
    """`invoke("subscribers", "list")` runs `digestd subscribers list` against `db_url`."""
    runner = CliRunner()
    env = {"DIGESTD_DATABASE_URL": db_url, "COLUMNS": "200", "NO_COLOR": "1", **extra_env}

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(app, list(args), env=env, input=input, catch_exceptions=False)

    return invoke


def json_of(result: Result) -> Any:
    """The JSON document a `--json` command printed (asserting it succeeded)."""
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)
