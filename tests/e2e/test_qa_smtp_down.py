"""QA: `send-now` / `deliveries retry` while the SMTP server is down say why, in one line
naming the server, exit 75 (temporary: try again later), and keep the delivery for a retry
(nothing is lost, nothing is recorded as sent)."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

from sqlmodel import select

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Delivery
from tests.support.cli import run_cli
from tests.support.digests import KENJI, seed_database


def _closed_port() -> int:
    with socket.socket() as s:  # bound then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_send_now_with_smtp_down_names_the_server_and_keeps_the_delivery(
    sqlite_url: str, smtp_server
) -> None:
    seed_database(sqlite_url, datetime.now(UTC), {"kenji@example.org": KENJI})
    port = _closed_port()
    env = {"DIGESTD_DATABASE_URL": sqlite_url, "DIGESTD_SMTP_PORT": str(port)}

    res = run_cli("send-now", "kenji@example.org", env=env)
    # The relay being down is not bad input (1) but temporary: 75, EX_TEMPFAIL.
    assert res.returncode == 75, res.stderr
    assert "Traceback" not in res.stderr
    out = res.stdout + res.stderr
    assert "retry later 1" in out
    problem = [line for line in out.splitlines() if f"127.0.0.1:{port}" in line]
    assert len(problem) == 1, out

    ctx = AppContext(Settings(database_url=sqlite_url))
    with session_scope(ctx.engine) as s:
        (delivery,) = s.exec(select(Delivery)).all()
        assert delivery.status == "retry"
        assert delivery.sent_at is None and delivery.entry_ids == ""
    ctx.dispose()

    # The server is back: the same delivery goes out, and the summary has no problem line.
    res = run_cli("deliveries", "retry", env={**env, "DIGESTD_SMTP_PORT": str(smtp_server.port)})
    assert res.returncode == 0, res.stderr
    assert "sent 1" in res.stdout and "127.0.0.1" not in res.stdout
    assert [m.message["To"] for m in smtp_server.messages] == ["kenji@example.org"]
