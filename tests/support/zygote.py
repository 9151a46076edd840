"""The zygote of tests/support/prefork.py: imports digestd once, then forks a child per
request that runs `python -m digestd ARGS` as a new interpreter would.

Run as `python -m tests.support.zygote SOCKET_PATH`; says "ready" on stdout once listening.
A request is one JSON line {"args", "env", "cwd"} with the child's stdout (stderr joined)
passed as a file descriptor; the answer is the child's pid, then its exit status when it
ends (-N when a signal N ended it, as subprocess.Popen says).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pkgutil
import selectors
import signal
import socket
import sys


def preload() -> None:
    """Every digestd module, so that a child imports nothing digestd needs."""
    import digestd
    import digestd.cli.main

    for module in pkgutil.walk_packages(digestd.__path__, "digestd."):
        if module.name != "digestd.__main__":
            importlib.import_module(module.name)


def child(request: dict[str, object], out_fd: int, listener: socket.socket) -> None:
    """In the forked child: become `python -m digestd ARGS` and exit as it would."""
    import runpy

    listener.close()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    os.close(out_fd)
    os.close(devnull)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL if sig != signal.SIGINT else signal.default_int_handler)
    env = request["env"]
    assert isinstance(env, dict)
    os.environ.clear()
    os.environ.update(env)
    if request.get("cwd"):
        os.chdir(str(request["cwd"]))
    # The CLI's consoles were made at import (in the zygote, without COLUMNS or NO_COLOR): a
    # new interpreter makes them from its environment, as they are sized here.
    from digestd.cli import common

    for console in (common.console, common.err_console):
        console._width = console._height = None
        console.no_color = "NO_COLOR" in os.environ
    args = request["args"]
    assert isinstance(args, list)
    sys.argv = ["digestd", *map(str, args)]
    code = 0
    try:
        runpy.run_module("digestd", run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        if stop.code is None:
            code = 0
        elif isinstance(stop.code, int):
            code = stop.code
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def main(path: str) -> None:
    preload()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}
    print("ready", flush=True)
    while True:
        for _key, _events in selector.select(timeout=0.02):
            conn, _ = listener.accept()
            data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 1)
            while not data.endswith(b"\n"):
                more = conn.recv(1 << 20)
                if not more:
                    break
                data += more
            request = json.loads(data)
            pid = os.fork()
            if pid == 0:
                conn.close()
                for other in children.values():
                    other.close()
                child(request, fds[0], listener)
            os.close(fds[0])
            conn.sendall(f"{pid}\n".encode())
            children[pid] = conn
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            conn = children.pop(pid, None)
            if conn is not None:
                code = os.waitstatus_to_exitcode(status)
                with contextlib.suppress(OSError):  # the test has gone
                    conn.sendall(f"{code}\n".encode())
                conn.close()


if __name__ == "__main__":
    main(sys.argv[1])
