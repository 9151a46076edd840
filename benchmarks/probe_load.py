"""The load items of probe_hardening.py: slow-header connections, and a big import while the
web serves the same SQLite file (issue 23, finding 7), and the helpers every probe prints
with. Run through probe_hardening.py.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import statistics
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from benchmarks.probe_hardening import Site


def load() -> str:
    """The load average, printed next to every timing (the machine may be shared)."""
    return f"load {os.getloadavg()[0]:.1f}"


def say(item: str, text: str) -> None:
    print(f"{item:<16} {text}", flush=True)


def timed_get(url: str, **kw: Any) -> tuple[str, float]:
    """A GET's status (or the error's name) and its time in ms."""
    started = time.perf_counter()
    try:
        status = str(httpx.get(url, timeout=30, **kw).status_code)
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    return status, (time.perf_counter() - started) * 1000


# ---- slowloris -----------------------------------------------------------------------------


def _slow_socket(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the headers never end
    sock.setblocking(False)
    return sock


def _attack(site: Site, count: int, seconds: float, *, reopen: bool) -> dict[str, Any]:
    """`count` slow-header connections for `seconds`, a header line each second on each,
    (with `reopen`) a new one for each the server closes; meanwhile a GET /healthz and a
    GET / every second from another thread. Bounded: `seconds`, and 50,000 re-opens."""
    selector = selectors.DefaultSelector()
    opened = time.monotonic()
    open_: set[socket.socket] = set()
    for _ in range(count):
        sock = _slow_socket(site.web_port)
        selector.register(sock, selectors.EVENT_READ)
        open_.add(sock)
    gets: list[tuple[str, float]] = []
    done = threading.Event()

    def ask() -> None:
        while not done.wait(1.0):
            gets.append(timed_get(f"{site.base}/healthz"))
            gets.append(timed_get(f"{site.base}/"))

    asker = threading.Thread(target=ask)
    asker.start()
    closed_at: list[float] = []
    reopens, next_trickle = 0, time.monotonic()
    while time.monotonic() < opened + seconds:
        if time.monotonic() >= next_trickle:
            for sock in list(open_):
                with contextlib.suppress(OSError):
                    sock.send(b"X-a: b\r\n")
            next_trickle = time.monotonic() + 1.0
        for key, _ in selector.select(timeout=0.05):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                selector.unregister(sock)
                open_.discard(sock)
                sock.close()
                closed_at.append(time.monotonic() - opened)
                if reopen and reopens < 50_000:
                    with contextlib.suppress(OSError):
                        fresh = _slow_socket(site.web_port)
                        selector.register(fresh, selectors.EVENT_READ)
                        open_.add(fresh)
                        reopens += 1
    done.set()
    asker.join()
    still_open = len(open_)
    for sock in open_:
        sock.close()
    selector.close()
    ms = sorted(t for _, t in gets) or [0.0]
    return {
        "open": still_open,
        "closed": len(closed_at),
        "first": min(closed_at, default=0.0),
        "reopens": reopens,
        "gets": dict(Counter(status for status, _ in gets)),
        "median": statistics.median(ms),
        "max": ms[-1],
    }


def probe_slowloris(site: Site, count: int, header_timeout: float = 10.0) -> None:
    once = _attack(site, count, header_timeout + 3, reopen=False)
    say(
        "slowloris",
        f"{count} slow-header connections (a header line a second), header timeout "
        f"{header_timeout:g} s: {once['open']} open at {header_timeout + 3:g} s ({once['closed']}"
        f" closed, the first at {once['first']:.1f} s); GETs meanwhile {once['gets']}, median "
        f"{once['median']:.0f} ms, max {once['max']:.0f} ms; {load()}",
    )
    kept = _attack(site, count, 15, reopen=True)
    after = [timed_get(f"{site.base}/healthz"), timed_get(f"{site.base}/")]
    say(
        "slowloris",
        f"{count} kept open for 15 s (each one closed re-opened: {kept['reopens']} times): GETs "
        f"meanwhile {kept['gets']}, median {kept['median']:.0f} ms, max {kept['max']:.0f} ms; "
        f"after: /healthz {after[0][0]} in {after[0][1]:.0f} ms, / {after[1][0]} in "
        f"{after[1][1]:.0f} ms; {load()}",
    )


# ---- import while serving ------------------------------------------------------------------


def write_big_csv(path: Path, megabytes: float) -> int:
    from benchmarks.bench_import import write_csv

    sample = path.with_suffix(".sample")
    write_csv(sample, 2000)
    per_row = sample.stat().st_size / 2000
    sample.unlink()
    rows = int(megabytes * 1024 * 1024 / per_row)
    write_csv(path, rows)
    return rows


def _answered(answers: dict[str, list[tuple[str, float]]]) -> str:
    parts = []
    for page, seen in answers.items():
        ms = sorted(t for _, t in seen) or [0.0]
        statuses = dict(Counter(s for s, _ in seen))
        parts.append(
            f"{page} {statuses} median {statistics.median(ms):.0f} ms, "
            f"p95 {ms[max(0, int(len(ms) * 0.95) - 1)]:.0f} ms, max {ms[-1]:.0f} ms"
        )
    return "; ".join(parts)


def probe_import(site: Site, megabytes: float, limit: float) -> None:
    path = site.tmp / "big.csv"
    rows = write_big_csv(path, megabytes)
    size = path.stat().st_size / 1024 / 1024
    answers: dict[str, list[tuple[str, float]]] = {"/healthz": [], "/": []}
    done = threading.Event()
    started = time.monotonic()

    def ask() -> None:
        next_report = time.monotonic() + 120
        while not done.is_set():
            for page in answers:
                answers[page].append(timed_get(f"{site.base}{page}"))
            if time.monotonic() >= next_report:  # so far, in case the import outlives us
                next_report += 120
                say(
                    "import",
                    f"at {time.monotonic() - started:.0f} s: {_answered(answers)}; {load()}",
                )
            done.wait(0.25)

    load_before = load()
    asker = threading.Thread(target=ask)
    asker.start()
    try:
        got = site.cli("subscribers", "import", "--quiet", str(path), timeout=limit)
        tail = (got.stdout.strip().splitlines() or [got.stderr.strip()])[-1][:120]
        outcome = f"exit {got.returncode}"
    except subprocess.TimeoutExpired:
        tail, outcome = "stopped", f"not finished after {limit:g} s"
    finally:
        done.set()
        asker.join()
    took = time.monotonic() - started
    path.unlink()
    say(
        "import",
        f"{size:.1f} MB, {rows} rows, {outcome} in {took:.0f} s ({tail}); meanwhile "
        f"{_answered(answers)}; {load_before} before, {load()} after",
    )
