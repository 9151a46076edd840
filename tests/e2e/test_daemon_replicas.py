"""Several `digestd run` replicas on one PostgreSQL share the work and never send twice;
on SQLite a second daemon on the same file is refused."""

from __future__ import annotations

import re
import signal
from collections import Counter

import httpx
import pytest

from tests.support.cli import run_cli
from tests.support.daemon import (
    DaemonProcess,
    daemon_env,
    delivery_statuses,
    seed_due_deliveries,
    wait_until,
)
from tests.support.smtp import HeldServer, SmtpTestServer

DUE = 600
BATCH = 50


@pytest.mark.postgres
def test_three_replicas_share_600_deliveries_each_message_once(
    postgres_url: str, smtp_server: SmtpTestServer
) -> None:
    planned = seed_due_deliveries(postgres_url, DUE)
    env = daemon_env(postgres_url, smtp_server.port, DIGESTD_BATCH_SIZE=str(BATCH))
    # The server answers no one until the replicas are all at work: one replica holds at most
    # two batches (the one it sends and the next, claimed meanwhile), so more claimed rows
    # than that are held by two replicas or more, each of which must then send its share,
    # however the machine schedules their start.
    held = HeldServer(smtp_server, 0)
    replicas = [DaemonProcess(env) for _ in range(3)]
    try:
        for replica in replicas:
            replica.wait_for_line(r"digestd running", timeout=60)
        wait_until(
            lambda: delivery_statuses(postgres_url).get("sending", 0) > 2 * BATCH,
            timeout=60,
            what="claims held by more than one replica",
        )
        held.resume()
        wait_until(
            lambda: delivery_statuses(postgres_url) == {"sent": DUE},
            timeout=180,
            what=f"{DUE} deliveries sent by three replicas",
        )
        for replica in replicas:
            replica.signal(signal.SIGTERM)
        for replica in replicas:
            assert replica.wait(timeout=30) == 0, replica.output
    finally:
        held.resume()
        for replica in replicas:
            replica.stop()

    received = Counter(m.message_id for m in smtp_server.messages)
    assert set(received) == set(planned)
    assert max(received.values()) == 1, f"sent twice: {[k for k, n in received.items() if n > 1]}"
    # The work was shared: more than one replica sent part of it, and their counts add up.
    per_replica = [
        sum(int(n) for n in re.findall(r"job=send claimed=\d+ sent=(\d+)", r.output))
        for r in replicas
    ]
    assert sum(per_replica) == DUE, per_replica
    assert sum(1 for n in per_replica if n) >= 2, per_replica


def test_second_daemon_on_same_sqlite_file_is_refused_with_one_line(
    sqlite_url: str, smtp_server: SmtpTestServer
) -> None:
    url = sqlite_url
    env = daemon_env(url, smtp_server.port)
    first = DaemonProcess(env)
    try:
        running = first.wait_for_line(r"digestd running .* web=(http://\S+)", timeout=60)
        # The web endpoints live in the daemon's loop and report its scheduler.
        web = re.search(r"web=(http://\S+)", running).group(1)  # type: ignore[union-attr]
        health = httpx.get(f"{web}/healthz", timeout=10)
        assert health.status_code == 200, health.text
        assert health.json()["scheduler"] == "alive"
        second = run_cli("run", env=env, timeout=60)
        assert second.returncode == 1
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert "already" in lines[0] and "digestd.db" in lines[0], lines[0]
        assert f"pid {first.proc.pid}" in lines[0], lines[0]
        assert first.proc.poll() is None, "the first daemon must keep running"
        first.signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0, first.output
    finally:
        first.stop()
    # Once the first one has stopped, the lock is free again.
    again = DaemonProcess(env)
    try:
        again.wait_for_line(r"digestd running", timeout=60)
    finally:
        again.stop()
