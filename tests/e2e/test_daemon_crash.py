"""A `digestd run` killed mid-send loses nothing and re-sends at most what was accepted but
not yet recorded (a small group commit, never a whole claim batch); a SIGTERM stops it
cleanly. The real daemon process, the real SMTP server, SQLite and PostgreSQL."""

from __future__ import annotations

import signal
import threading
from collections import Counter
from pathlib import Path

import pytest

from digestd.delivery.recorder import UNRECORDED_MAX
from tests.support.daemon import (
    DaemonProcess,
    daemon_env,
    delivery_statuses,
    seed_due_deliveries,
    wait_until,
)
from tests.support.smtp import SmtpTestServer

TOTAL = 200
# One claim takes every delivery: the kill lands in the middle of one big batch, where only
# the group commits keep the number of accepted-but-unrecorded messages small.
CLAIM_BATCH = 500


def _notify_at(server: SmtpTestServer, count: int) -> threading.Event:
    """An event set when the SMTP server has accepted `count` messages (it is told on RCPT)."""
    reached = threading.Event()

    def hook(_rcpt: str, accepted: int) -> None:
        if accepted >= count:
            reached.set()
        return None

    server.set_fault(hook)
    return reached


def _seeded(
    url: str, server: SmtpTestServer, **extra: str
) -> tuple[str, dict[str, str], dict[str, str]]:
    """A database with TOTAL due deliveries, the planned Message-IDs and the daemon's env
    (sending slowly enough that a signal lands in the middle of the run)."""
    planned = seed_due_deliveries(url, TOTAL)
    env = daemon_env(
        url,
        server.port,
        DIGESTD_BATCH_SIZE=str(CLAIM_BATCH),
        DIGESTD_SMTP_RATE="100",
        **extra,
    )
    return url, planned, env


def _signal_mid_send(
    env: dict[str, str], server: SmtpTestServer, *, after: int, sig: signal.Signals, code: int
) -> str:
    """Run the daemon until the server has accepted `after` messages, send it `sig`, check it
    exits with `code`, and return its output."""
    mid_send = _notify_at(server, after)
    daemon = DaemonProcess(env)
    try:
        assert mid_send.wait(timeout=60), daemon.output
        daemon.signal(sig)
        assert daemon.wait(timeout=30) == code, daemon.output
    finally:
        daemon.stop()
    server.set_fault(None)
    return daemon.output


def _restart_until_all_sent(env: dict[str, str], url: str, what: str, *, line: str = "") -> None:
    """Start the daemon again, wait until every delivery is sent (and `line` was logged),
    then stop it with SIGTERM, which must exit 0."""
    daemon = DaemonProcess(env)
    try:
        wait_until(lambda: delivery_statuses(url) == {"sent": TOTAL}, timeout=90, what=what)
        if line:
            daemon.wait_for_line(line)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0, daemon.output
    finally:
        daemon.stop()


# Long enough that the killed daemon's claims cannot expire while it is still sending, even
# on a loaded machine (a lease that runs out mid-send hands rows back early: more duplicates
# than the crash itself causes), short enough that the restart does not wait long.
LEASE_SECONDS = "6"


def _kill_and_restart(url: str, server: SmtpTestServer) -> None:
    url, planned, env = _seeded(url, server, DIGESTD_LEASE_SECONDS=LEASE_SECONDS)
    _signal_mid_send(env, server, after=TOTAL // 2, sig=signal.SIGKILL, code=-signal.SIGKILL)
    at_kill = delivery_statuses(url)
    assert at_kill.get("sent", 0) < TOTAL, f"the kill came too late to test anything: {at_kill}"

    _restart_until_all_sent(
        env,
        url,
        f"all {TOTAL} deliveries sent after the restart",
        # It was the lease running out that brought the killed worker's claims back.
        line=r"job=housekeeping released_expired_leases=[1-9]" if at_kill.get("sending") else "",
    )

    received = Counter(m.message["Message-ID"] for m in server.messages)
    assert set(received) == set(planned), "a planned digest never arrived, or a stray one did"
    duplicates = sum(received.values()) - len(planned)
    assert 0 <= duplicates <= UNRECORDED_MAX, f"{duplicates} duplicates: {received.most_common(3)}"
    # What was recorded sent at the kill was never sent again.
    assert at_kill.get("sent", 0) >= TOTAL // 2 - UNRECORDED_MAX, at_kill
    # A duplicate is the same message again: same Message-ID, same subscriber.
    for m in server.messages:
        assert m.recipients == [planned[m.message["Message-ID"]]]


def test_sigkill_mid_send_then_restart_sends_everything_once_sqlite(
    tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    _kill_and_restart(f"sqlite:///{tmp_path / 'digestd.db'}", smtp_server)


@pytest.mark.postgres
def test_sigkill_mid_send_then_restart_sends_everything_once_postgres(
    postgres_url: str, smtp_server: SmtpTestServer
) -> None:
    _kill_and_restart(postgres_url, smtp_server)


def test_sigterm_mid_send_exits_zero_and_leaves_nothing_in_sending(
    tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    url, planned, env = _seeded(f"sqlite:///{tmp_path / 'digestd.db'}", smtp_server)
    output = _signal_mid_send(env, smtp_server, after=TOTAL // 3, sig=signal.SIGTERM, code=0)

    statuses = delivery_statuses(url)
    assert "sending" not in statuses, statuses
    assert statuses.get("sent", 0) + statuses.get("pending", 0) == TOTAL, statuses
    assert 0 < statuses.get("sent", 0) < TOTAL, statuses
    # What the server accepted is exactly what is recorded sent: nothing sent twice or lost.
    received = [m.message["Message-ID"] for m in smtp_server.messages]
    assert len(received) == len(set(received)) == statuses["sent"], output
    assert set(received) <= set(planned)
    assert "stopped worker=" in output

    # What was handed back is claimable at once: a restart sends the rest, each once.
    _restart_until_all_sent(env, url, f"the remaining deliveries sent after a restart ({statuses})")
    received = [m.message["Message-ID"] for m in smtp_server.messages]
    assert sorted(received) == sorted(planned), "after a clean stop nothing is sent twice"
