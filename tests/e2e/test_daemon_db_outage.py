"""Issue 23 finding 6: PostgreSQL goes away a third of the way into a send run. The daemon (a
real process) notices, and as soon as the database answers again the pass that failed hands
its claims back (what the server accepted recorded as sent, the rest pending), so nothing
waits for its lease: every digest goes out once, none twice, long before the lease ends.

The outage cuts this daemon's connections only: a TCP proxy on loopback between the daemon
and the shared PostgreSQL (tests/support/tcp_proxy.py), closed and reopened."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy.engine import make_url

from tests.support.daemon import (
    DaemonProcess,
    daemon_env,
    delivery_statuses,
    seed_due_deliveries,
    wait_until,
)
from tests.support.smtp import SmtpTestServer
from tests.support.tcp_proxy import tcp_proxy

TOTAL = 300
# Far longer than the test waits: whatever comes back, came back without the lease.
LEASE_SECONDS = "600"


@pytest.mark.postgres
def test_after_a_database_outage_claims_come_back_at_once_and_nothing_is_sent_twice(
    postgres_url: str, smtp_server: SmtpTestServer
) -> None:
    planned = seed_due_deliveries(postgres_url, TOTAL)
    a_third = threading.Event()

    def hook(_rcpt: str, accepted: int) -> None:
        if accepted >= TOTAL // 3:
            a_third.set()
        return None

    smtp_server.set_fault(hook)
    target = make_url(postgres_url)
    with tcp_proxy((target.host or "127.0.0.1", target.port or 5432)) as proxy:
        through = target.set(port=proxy.port).render_as_string(hide_password=False)
        env = daemon_env(
            through,
            smtp_server.port,
            DIGESTD_LEASE_SECONDS=LEASE_SECONDS,
            DIGESTD_BATCH_SIZE="100",
            DIGESTD_SMTP_RATE="150",
        )
        daemon = DaemonProcess(env)
        try:
            assert a_third.wait(timeout=60), daemon.output
            proxy.cut()
            # The daemon noticed: its send pass failed.
            daemon.wait_for_line(r"send pass failed|job=send failed", timeout=60)
            at_outage = delivery_statuses(postgres_url)
            proxy.restore()
            wait_until(
                lambda: delivery_statuses(postgres_url) == {"sent": TOTAL},
                timeout=90,
                what=f"all {TOTAL} sent after the database came back (at the outage: {at_outage})",
            )
        finally:
            daemon.stop()
    assert at_outage.get("sending", 0) > 0, (
        f"nothing held at the outage: {at_outage}\n{daemon.output}"
    )
    received = Counter(m.message_id for m in smtp_server.messages)
    assert set(received) == set(planned)
    assert sum(received.values()) == TOTAL, f"sent twice: {received.most_common(3)}"
    assert "handed back" in daemon.output
