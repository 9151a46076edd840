"""The listener's memory against hostile senders, in a real `digestd inbound --listen`
process with the default limits (10 MB messages): a DATA line without CRLF, an over-long
command line and an oversize message with proper lines are each cut while they arrive
(552 or 500, connection closed), and the process's peak RSS (VmHWM) stays within 50 MB of
what it was before. Before the listener bounded its reads, the first grew with every byte
sent (400 MB took the process from 106 to 518 MB) and the others were answered only after
the whole line or message had been read."""

from __future__ import annotations

import re
import smtplib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.daemon import DaemonProcess, daemon_env
from tests.support.databases import copy_sqlite
from tests.support.inbound import BOUNCE_ADDRESS, dsn
from tests.support.smtp_hostile import Flood, RawSmtp, flood, peak_kb, reset_peak, rss_kb

MB = 1024 * 1024
MAX_BYTES = 10 * MB  # DIGESTD_INBOUND_MAX_BYTES's default
HEADROOM_KB = 50 * 1024  # the bound: within 50 MB of the start


@dataclass
class Listener:
    process: DaemonProcess
    port: int

    @property
    def pid(self) -> int:
        return self.process.proc.pid

    def raw(self) -> RawSmtp:
        return RawSmtp("127.0.0.1", self.port, timeout=30)


@pytest.fixture(scope="module")
def listener(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Listener]:
    tmp: Path = tmp_path_factory.mktemp("limits")
    # A copy of the session's migrated SQLite file (migrating a new one took about a second).
    url = copy_sqlite(sqlite_template, tmp / "digestd.db")
    env = daemon_env(
        url,
        9,
        DIGESTD_BOUNCE_ADDRESS=BOUNCE_ADDRESS,
        DIGESTD_INBOUND_LISTEN="127.0.0.1:0",
        DIGESTD_INBOUND_MAX_BYTES=str(MAX_BYTES),
        DIGESTD_INBOUND_TIMEOUT="30",
    )
    process = DaemonProcess(env, "--listen", command=("inbound",))
    try:
        line = process.wait_for_line(r"digestd inbound listening inbound_smtp=127\.0\.0\.1:\d+")
        port = int(re.search(r"inbound_smtp=127\.0\.0\.1:(\d+)", line).group(1))  # type: ignore[union-attr]
        server = Listener(process, port)
        # One real bounce first, so that what processing loads lazily is in the baseline.
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.sendmail("", [BOUNCE_ADDRESS], dsn(to=BOUNCE_ADDRESS, recipient="a@b.example"))
        yield server
    finally:
        process.stop()
    assert "Traceback" not in process.output


@pytest.fixture
def baseline(listener: Listener) -> Iterator[int]:
    """The listener's RSS before the test (kB); afterwards its peak must be within 50 MB."""
    start = rss_kb(listener.pid)
    reset_peak(listener.pid)
    yield start
    peak = peak_kb(listener.pid)
    assert peak - start <= HEADROOM_KB, f"RSS {start} kB before, peak {peak} kB during the test"


def test_200_mb_without_crlf_is_cut_at_the_size_limit_with_552(
    listener: Listener, baseline: int
) -> None:
    with listener.raw() as conn:
        conn.open_data(BOUNCE_ADDRESS)
        result = flood(conn, b"x", 200 * MB)
    assert result.reply.startswith(b"552 "), result
    assert result.closed, result
    assert result.sent < 100 * MB, result  # answered while it was still sending


def test_an_oversize_message_with_proper_lines_is_cut_before_its_end(
    listener: Listener, baseline: int
) -> None:
    with listener.raw() as conn:
        conn.open_data(BOUNCE_ADDRESS, size=1000)  # a SIZE that lies
        result = flood(conn, b"y" * 998 + b"\r\n", 200 * MB)
    assert result.reply.startswith(b"552 "), result
    assert result.closed, result
    assert result.sent < 100 * MB, result


def test_over_long_command_lines_are_refused_at_once_on_every_connection(
    listener: Listener, baseline: int
) -> None:
    """19 connections (the cap is 20) each sending a 32 MB command line: each is answered
    500 and closed within the first kilobytes, and memory does not grow per connection."""
    results: list[Flood] = []
    lock = threading.Lock()

    def attack() -> None:
        with listener.raw() as conn:
            assert conn.line().startswith(b"220 ")
            result = flood(conn, b"EHLO " + b"a" * 1000, 32 * MB, end=b"\r\n")
        with lock:
            results.append(result)

    threads = [threading.Thread(target=attack) for _ in range(19)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 19
    for result in results:
        assert result.reply.startswith(b"500 5.5.2"), result
        assert result.closed, result
        assert result.sent < 32 * MB, result
