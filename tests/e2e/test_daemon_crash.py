"""A `digestd run` killed mid-send loses nothing; a SIGTERM stops it cleanly."""

from __future__ import annotations

import signal
import threading
from collections import Counter
from pathlib import Path

from tests.support.daemon import (
    DaemonProcess,
    daemon_env,
    delivery_statuses,
    seed_due_deliveries,
    wait_until,
)
from tests.support.smtp import SmtpTestServer

TOTAL = 120
# The daemon claims this many deliveries at a time: the most it can hold unrecorded when
# it is killed, hence the most duplicates a kill may cause.
CLAIM_BATCH = 10


def _notify_at(server: SmtpTestServer, count: int) -> threading.Event:
    """An event set when the SMTP server has accepted `count` messages (it is told on RCPT)."""
    reached = threading.Event()

    def hook(_rcpt: str, accepted: int) -> None:
        if accepted >= count:
            reached.set()
        return None

    server.set_fault(hook)
    return reached


def test_sigkill_mid_send_then_restart_sends_everything_once(
    tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    url = f"sqlite:///{tmp_path / 'digestd.db'}"
    planned = seed_due_deliveries(url, TOTAL)
    env = daemon_env(
        url,
        smtp_server.port,
        DIGESTD_LEASE_SECONDS="2",
        DIGESTD_BATCH_SIZE=str(CLAIM_BATCH),
        # Slow enough that the kill lands in the middle of the run.
        DIGESTD_SMTP_RATE="40",
    )

    mid_send = _notify_at(smtp_server, 30)
    first = DaemonProcess(env)
    try:
        assert mid_send.wait(timeout=60), first.output
        first.signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
    finally:
        first.stop()
    smtp_server.set_fault(None)
    at_kill = delivery_statuses(url)
    assert at_kill.get("sent", 0) < TOTAL, f"the kill came too late to test anything: {at_kill}"

    second = DaemonProcess(env)
    try:
        wait_until(
            lambda: delivery_statuses(url) == {"sent": TOTAL},
            timeout=90,
            what=f"all {TOTAL} deliveries sent after the restart",
        )
        # It was the lease running out that brought the killed worker's claims back.
        if at_kill.get("sending"):
            second.wait_for_line(r"job=housekeeping released_expired_leases=[1-9]")
        second.signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0, second.output
    finally:
        second.stop()

    received = Counter(m.message["Message-ID"] for m in smtp_server.messages)
    assert set(received) == set(planned), "a planned digest never arrived, or a stray one did"
    duplicates = sum(received.values()) - len(planned)
    assert 0 <= duplicates <= CLAIM_BATCH, f"{duplicates} duplicates: {received.most_common(3)}"
    # A duplicate is the same message again: same Message-ID, same subscriber.
    for m in smtp_server.messages:
        assert m.recipients == [planned[m.message["Message-ID"]]]


def test_sigterm_mid_send_exits_zero_and_leaves_nothing_in_sending(
    tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    url = f"sqlite:///{tmp_path / 'digestd.db'}"
    planned = seed_due_deliveries(url, TOTAL)
    env = daemon_env(
        url,
        smtp_server.port,
        DIGESTD_BATCH_SIZE=str(CLAIM_BATCH),
        DIGESTD_SMTP_RATE="40",
    )
    mid_send = _notify_at(smtp_server, 20)
    daemon = DaemonProcess(env)
    try:
        assert mid_send.wait(timeout=60), daemon.output
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0, daemon.output
    finally:
        daemon.stop()

    statuses = delivery_statuses(url)
    assert "sending" not in statuses, statuses
    assert statuses.get("sent", 0) + statuses.get("pending", 0) == TOTAL, statuses
    assert 0 < statuses.get("sent", 0) < TOTAL, statuses
    # What the server accepted is exactly what is recorded sent: nothing sent twice or lost.
    received = [m.message["Message-ID"] for m in smtp_server.messages]
    assert len(received) == len(set(received)) == statuses["sent"], daemon.output
    assert set(received) <= set(planned)
    assert "stopped worker=" in daemon.output

    # What was handed back is claimable at once: a restart sends the rest, each once.
    smtp_server.set_fault(None)
    again = DaemonProcess(env)
    try:
        wait_until(
            lambda: delivery_statuses(url) == {"sent": TOTAL},
            timeout=90,
            what=f"the remaining deliveries sent after a restart ({statuses})",
        )
        again.signal(signal.SIGTERM)
        assert again.wait(timeout=30) == 0, again.output
    finally:
        again.stop()
    received = [m.message["Message-ID"] for m in smtp_server.messages]
    assert sorted(received) == sorted(planned), "after a clean stop nothing is sent twice"
