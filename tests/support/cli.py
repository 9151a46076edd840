"""Run the real `digestd` command in a subprocess, as an admin would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def run_cli(
    *args: str,
    env: Mapping[str, str],
    cwd: Path | str | None = None,
    input: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """`python -m digestd ARGS` with only the given DIGESTD_* environment (no stray .env)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DIGESTD_")}
    clean.update(env)
    clean.setdefault("COLUMNS", "200")
    clean["NO_COLOR"] = "1"
    # Import digestd from this checkout even when cwd is elsewhere (worktrees, tmp dirs).
    repo = str(Path(__file__).resolve().parents[2])
    clean["PYTHONPATH"] = repo + os.pathsep + clean.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "digestd", *args],
        env=clean,
        cwd=cwd,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
