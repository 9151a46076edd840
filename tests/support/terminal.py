"""Run the real `digestd` attached to a pseudo-terminal, as when an admin types the command."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_in_terminal(
    *args: str, env: Mapping[str, str], timeout: float = 60, typed: str | None = None
) -> tuple[int, str]:
    """`python -m digestd ARGS` with stdin, stdout and stderr on a pty; (exit code, output).
    `typed` is what the person types (an answer to a question), sent once it is asked."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DIGESTD_") and k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE")
    }
    clean.update(env)
    clean["TERM"] = "xterm-256color"
    clean["COLUMNS"] = "120"
    clean["PYTHONPATH"] = str(REPO) + os.pathsep + clean.get("PYTHONPATH", "")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "digestd", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=clean,
        close_fds=True,
    )
    os.close(slave)
    output = bytearray()
    pending = typed.encode() if typed else b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            output += data
            if pending and b"?" in output:  # the question is on the screen: answer it
                os.write(master, pending)
                pending = b""
        else:
            proc.kill()
            raise AssertionError(f"digestd {' '.join(args)} did not finish in {timeout}s")
        return proc.wait(timeout=10), output.decode("utf-8", "replace")
    finally:
        os.close(master)
