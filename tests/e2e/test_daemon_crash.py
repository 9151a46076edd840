"""A `digestd run` killed mid-send loses nothing and re-sends at most what was accepted but
not yet recorded (a small group commit, never a whole claim batch); a SIGTERM stops it
cleanly. The real daemon process, the real SMTP server, SQLite and PostgreSQL."""

from __future__ import annotations

import re
import signal
from collections import Counter

import pytest

from digestd.delivery.recorder import UNRECORDED_MAX
from tests.support.daemon import (
    DaemonProcess,
    daemon_env,
    delivery_statuses,
    expire_leases,
    seed_due_deliveries,
    wait_until,
)
from tests.support.smtp import HeldServer, SmtpTestServer

TOTAL = 200
# One claim takes every delivery: the signal lands in the middle of one big batch, where only
# the group commits keep the number of accepted-but-unrecorded messages small.
CLAIM_BATCH = 500


def _seeded(url: str, server: SmtpTestServer) -> tuple[str, dict[str, str], dict[str, str]]:
    """A database with TOTAL due deliveries, the planned Message-IDs and the daemon's env."""
    planned = seed_due_deliveries(url, TOTAL)
    env = daemon_env(url, server.port, DIGESTD_BATCH_SIZE=str(CLAIM_BATCH))
    return url, planned, env


def _signal_mid_send(
    env: dict[str, str], server: SmtpTestServer, *, after: int, sig: signal.Signals, code: int
) -> str:
    """Run the daemon until the server has accepted `after` messages, hold the server there,
    send the daemon `sig` (SIGTERM: and let it see the signal before the server answers
    again), check it exits with `code`, and return its output."""
    held = HeldServer(server, after)
    daemon = DaemonProcess(env)
    try:
        assert held.reached.wait(timeout=60), daemon.output
        daemon.signal(sig)
        if sig != signal.SIGKILL:
            daemon.wait_for_line(rf"received {sig.name}: stopping")
        held.resume()
        assert daemon.wait(timeout=30) == code, daemon.output
    finally:
        held.resume()
        daemon.stop()
    return daemon.output


def _released(output: str) -> int:
    """Claims the daemon handed back because their lease had run out (by housekeeping, or by
    a send pass before it claims)."""
    lines = r"job=(?:housekeeping released_expired_leases|send .*?released)=(\d+)"
    return sum(int(n) for n in re.findall(lines, output))


def _restart_until_all_sent(env: dict[str, str], url: str, what: str) -> str:
    """Start the daemon again, wait until every delivery is sent, then stop it with SIGTERM,
    which must exit 0; returns its output."""
    daemon = DaemonProcess(env)
    try:
        wait_until(lambda: delivery_statuses(url) == {"sent": TOTAL}, timeout=90, what=what)
        daemon.wait_for_line(r"job=send claimed=\d+ sent=[1-9]")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0, daemon.output
    finally:
        daemon.stop()
    return daemon.output


def _kill_and_restart(url: str, server: SmtpTestServer) -> None:
    url, planned, env = _seeded(url, server)
    _signal_mid_send(env, server, after=TOTAL // 2, sig=signal.SIGKILL, code=-signal.SIGKILL)
    at_kill = delivery_statuses(url)
    assert at_kill.get("sent", 0) < TOTAL, f"the kill came too late to test anything: {at_kill}"
    assert at_kill.get("sending"), f"the killed worker held no claims: {at_kill}"

    # The killed worker's lease (DIGESTD_LEASE_SECONDS, long enough that it never runs out
    # while a live worker sends, however loaded the machine) runs out: time moves on for the
    # claims instead of the test waiting for it.
    expire_leases(url)
    output = _restart_until_all_sent(env, url, f"all {TOTAL} deliveries sent after the restart")
    # It was the lease running out that brought every one of the killed worker's claims back.
    assert _released(output) == at_kill["sending"], output

    received = Counter(m.message_id for m in server.messages)
    assert set(received) == set(planned), "a planned digest never arrived, or a stray one did"
    duplicates = sum(received.values()) - len(planned)
    assert 0 <= duplicates <= UNRECORDED_MAX, f"{duplicates} duplicates: {received.most_common(3)}"
    # What was recorded sent at the kill was never sent again.
    assert at_kill.get("sent", 0) >= TOTAL // 2 - UNRECORDED_MAX, at_kill
    # A duplicate is the same message again: same Message-ID, same subscriber.
    for m in server.messages:
        assert m.recipients == [planned[m.message_id]]


def test_sigkill_mid_send_then_restart_sends_everything_once_sqlite(
    sqlite_url: str, smtp_server: SmtpTestServer
) -> None:
    _kill_and_restart(sqlite_url, smtp_server)


@pytest.mark.postgres
def test_sigkill_mid_send_then_restart_sends_everything_once_postgres(
    postgres_url: str, smtp_server: SmtpTestServer
) -> None:
    _kill_and_restart(postgres_url, smtp_server)


def test_sigterm_mid_send_exits_zero_and_leaves_nothing_in_sending(
    sqlite_url: str, smtp_server: SmtpTestServer
) -> None:
    url, planned, env = _seeded(sqlite_url, smtp_server)
    output = _signal_mid_send(env, smtp_server, after=TOTAL // 3, sig=signal.SIGTERM, code=0)

    statuses = delivery_statuses(url)
    assert "sending" not in statuses, statuses
    assert statuses.get("sent", 0) + statuses.get("pending", 0) == TOTAL, statuses
    assert 0 < statuses.get("sent", 0) < TOTAL, statuses
    # What the server accepted is exactly what is recorded sent: nothing sent twice or lost.
    received = [m.message_id for m in smtp_server.messages]
    assert len(received) == len(set(received)) == statuses["sent"], output
    assert set(received) <= set(planned)
    assert "stopped worker=" in output

    # What was handed back is claimable at once: a restart sends the rest, each once.
    _restart_until_all_sent(env, url, f"the remaining deliveries sent after a restart ({statuses})")
    received = [m.message_id for m in smtp_server.messages]
    assert sorted(received) == sorted(planned), "after a clean stop nothing is sent twice"
