"""Real `digestd` processes without a new interpreter each: forked from a process that has
imported digestd once.

A daemon test starts `python -m digestd run` (or `inbound --listen`) a few times; each start
paid a new interpreter and digestd's imports (about a second of CPU, three on a busy
machine) before the test could begin. Here one helper process per test process (the
"zygote", started on first use) imports every digestd module and then, for each request,
forks a child that runs `python -m digestd ARGS` as the interpreter would (digestd's
`__main__`, its own environment, working directory, stdin/stdout/stderr, default signal
handlers): a real process, with its own pid, signals, exit code and memory, that only skips
the imports. The test talks to it through `ForkedProcess`, which has the part of
`subprocess.Popen` the daemon tests use.

What only a new interpreter shows (the console script, `python -m digestd` itself, settings
read at import) stays tested by run_cli_process and the console-script tests.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[2]
_zygote: Zygote | None = None
_lock = threading.Lock()


class Zygote:
    """The helper process (tests/support/zygote.py) and its Unix socket."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="digestd-zygote-"))
        self.path = str(self.folder / "socket")
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIGESTD_")}
        env.pop("COLUMNS", None)
        env.pop("LINES", None)
        env["PYTHONUNBUFFERED"] = "1"  # the children's output reaches the test line by line
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.zygote", self.path],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        ready = self.proc.stdout.readline()  # bounded by the imports: it says so or exits
        if ready.strip() != "ready":
            raise RuntimeError(f"the zygote did not start: {ready!r} (exit {self.proc.poll()})")

    def spawn(
        self, args: list[str], env: Mapping[str, str], cwd: str | None, stdout_fd: int
    ) -> tuple[socket.socket, int]:
        """A forked child running `python -m digestd ARGS` with output to `stdout_fd`."""
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(self.path)
        request = json.dumps({"args": args, "env": dict(env), "cwd": cwd}).encode()
        socket.send_fds(conn, [request + b"\n"], [stdout_fd])
        pid = int(_read_line(conn))
        return conn, pid

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)


def zygote() -> Zygote:
    """This test process's zygote (started on first use, stopped at exit)."""
    global _zygote
    with _lock:
        if _zygote is None or _zygote.proc.poll() is not None:
            _zygote = Zygote()
            import atexit

            atexit.register(_zygote.stop)
        return _zygote


def _read_line(conn: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(64)
        if not chunk:
            raise ConnectionError("the zygote closed the connection")
        data += chunk
    return data.decode().strip()


class ForkedProcess:
    """`python -m digestd ARGS` forked from the zygote: pid, stdout (stderr joined to it),
    poll(), wait(), send_signal(), kill(), returncode, as subprocess.Popen has them."""

    def __init__(self, args: list[str], env: Mapping[str, str], cwd: str | Path | None) -> None:
        read_fd, write_fd = os.pipe()
        try:
            self._conn, self.pid = zygote().spawn(
                args, env, str(cwd) if cwd is not None else None, write_fd
            )
        finally:
            os.close(write_fd)  # the child holds its own copy: EOF when it exits
        self.stdout: IO[str] = os.fdopen(read_fd, "r", encoding="utf-8", errors="replace")
        self.returncode: int | None = None
        self.args = args

    def poll(self) -> int | None:
        if self.returncode is None:
            self._conn.setblocking(False)
            try:
                self._status()
            except BlockingIOError:
                pass
            finally:
                if self.returncode is None:
                    self._conn.setblocking(True)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self._conn.settimeout(timeout)
            try:
                self._status()
            except TimeoutError:
                raise subprocess.TimeoutExpired(self.args, timeout or 0) from None
            finally:
                if self.returncode is None:
                    self._conn.settimeout(None)
        assert self.returncode is not None
        return self.returncode

    def _status(self) -> None:
        """The exit status the zygote reports when the child ends (as Popen: -N for signal N)."""
        self.returncode = int(_read_line(self._conn))
        self._conn.close()

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def start(args: list[str], env: Mapping[str, str], cwd: str | Path | None = None) -> ForkedProcess:
    """`python -m digestd ARGS` as a forked process (see the module's docstring)."""
    return ForkedProcess(args, env, cwd)
