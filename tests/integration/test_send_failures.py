"""Failures as data: each way a send can fail, against a real SMTP server (or none), ends in
a delivery row carrying the reply code, the enhanced status code and whose problem it was
(hard / soft / sender: the recipient's server said so; ours: no server judged the
recipient), and only the recipient's failures reach the bounce policy. On SQLite and
PostgreSQL."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Delivery, Subscriber
from digestd.core.statuses import DeliveryStatus as D
from digestd.delivery.deliveries import DeliveryRow, Outcome, claim, list_deliveries
from digestd.delivery.planning import plan_due
from digestd.delivery.recorder import record_group
from digestd.delivery.sending import send_due
from tests.support.digests import add_subscriber
from tests.support.sending import add_papers
from tests.support.smtp import SmtpTestServer, free_port

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)


def _setup(app: AppContext, clock: Any, port: int, emails: list[str], **settings: Any) -> None:
    clock.set(NOW)
    app.settings = Settings(**{**app.settings.__dict__, "smtp_port": port, **settings})
    with session_scope(app.engine) as s:
        add_papers(s, NOW - timedelta(hours=1))
        for email in emails:
            add_subscriber(s, email, NOW - timedelta(days=3))
    assert plan_due(app).planned == len(emails)


def _rows(app: AppContext) -> dict[str, DeliveryRow]:
    with session_scope(app.engine) as s:
        return {r.email: r for r in list_deliveries(s)}


def _subscriber(app: AppContext, email: str) -> Subscriber:
    with session_scope(app.engine) as s:
        found = s.exec(select(Subscriber).where(Subscriber.email == email)).one()
        s.expunge(found)
        return found


async def test_the_recipients_refusals_are_read_into_fields(
    app: AppContext, clock: Any, smtp_server: SmtpTestServer
) -> None:
    replies = {
        "gone@example.org": "550 5.1.1 <gone@example.org>: Recipient rejected: User unknown",
        "full@example.org": "452 4.2.2 Mailbox full, try again later",
        "spam@example.org": "554 5.7.1 Message rejected: listed on spamhaus",
    }
    smtp_server.set_fault(lambda rcpt, _n: replies.get(rcpt))
    _setup(app, clock, smtp_server.port, [*replies, "fine@example.org"])
    report = await send_due(app, worker_id="w")
    assert (report.sent, report.failed, report.retry) == (1, 2, 1)

    rows = _rows(app)
    facts = {e: (r.status, r.smtp_code, r.enhanced_status, r.severity) for e, r in rows.items()}
    assert facts == {
        "gone@example.org": ("failed", 550, "5.1.1", "hard"),
        "full@example.org": ("retry", 452, "4.2.2", "soft"),
        "spam@example.org": ("failed", 554, "5.7.1", "sender"),
        "fine@example.org": ("sent", None, None, None),
    }
    # The server's words stay for people.
    assert "User unknown" in (rows["gone@example.org"].error or "")
    # Only a hard failure bounces the subscriber; one about us never counts against them.
    assert _subscriber(app, "gone@example.org").status == "bounced"
    spam = _subscriber(app, "spam@example.org")
    assert spam.status == "active" and spam.bounce_count == 0
    metrics = app.metrics.exposition().decode()
    assert "digestd_messages_bounced_total 1.0" in metrics


async def test_our_relay_down_is_ours_and_retried(app: AppContext, clock: Any) -> None:
    _setup(app, clock, free_port(), ["a@example.org", "b@example.org"])  # nothing listens
    report = await send_due(app, worker_id="w")
    assert (report.sent, report.retry, report.failed) == (0, 2, 0)
    for row in _rows(app).values():
        assert (row.status, row.smtp_code, row.severity) == ("retry", None, "ours")
    assert _subscriber(app, "a@example.org").bounce_count == 0


async def test_our_auth_failing_and_our_sender_refused_are_ours(
    app: AppContext, clock: Any
) -> None:
    server = SmtpTestServer(auth=("digest", "right")).start()
    try:
        _setup(
            app,
            clock,
            server.port,
            ["a@example.org"],
            smtp_username="digest",
            smtp_password="wrong",
        )
        await send_due(app, worker_id="w")
        [row] = _rows(app).values()
        # 535 5.7.8 from AUTH: a reply code, but about our account, not the recipient.
        assert (row.status, row.severity, row.smtp_code) == ("retry", "ours", 535)
    finally:
        server.stop()

    refusing = SmtpTestServer().start()

    async def handle_MAIL(server: Any, session: Any, envelope: Any, address: str, options: Any):  # type: ignore[no-untyped-def]
        return "553 5.7.1 Sender address rejected: not owned by user"

    refusing.handler.handle_MAIL = handle_MAIL  # type: ignore[attr-defined]
    try:
        clock.advance(hours=1)  # the retry is due
        app.settings = Settings(
            **{**app.settings.__dict__, "smtp_port": refusing.port, "smtp_username": None}
        )
        await send_due(app, worker_id="w")
        [row] = _rows(app).values()
        # A permanent refusal of our sender is not the recipient's: retried, not failed.
        assert (row.status, row.severity, row.smtp_code, row.enhanced_status) == (
            "retry",
            "ours",
            553,
            "5.7.1",
        )
        assert _subscriber(app, "a@example.org").status == "active"
    finally:
        refusing.stop()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server on loopback that accepts connections and never greets."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()


async def test_a_timeout_before_the_greeting_is_ours(
    app: AppContext, clock: Any, silent_server: int
) -> None:
    _setup(app, clock, silent_server, ["a@example.org"], smtp_timeout=0.2)
    await send_due(app, worker_id="w")
    [row] = _rows(app).values()
    assert (row.status, row.severity, row.smtp_code) == ("retry", "ours", None)


def test_outcomes_of_rows_taken_over_are_reported_with_a_warning_and_a_metric(
    app: AppContext, clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _setup(app, clock, free_port(), ["a@example.org", "b@example.org"])
    with session_scope(app.engine) as s:
        mine = claim(s, worker_id="slow", limit=2, now=NOW, lease_seconds=60)
    # The lease runs out; another worker takes one of them over.
    with session_scope(app.engine) as s:
        s.execute(update(Delivery).where(col(Delivery.id) == mine[0].id).values(claimed_by="other"))
    with caplog.at_level(logging.WARNING, logger="digestd.delivery.recorder"):
        record_group(app, [Outcome(c, D.SENT) for c in mine], "slow")
    rows = {r.id: r for r in _rows(app).values()}
    assert rows[mine[0].id].status == "sending" and rows[mine[0].id].claimed_by == "other"
    assert rows[mine[1].id].status == "sent"
    [warning] = [r for r in caplog.records if "not recorded" in r.getMessage()]
    assert f"deliveries {mine[0].id} " in warning.getMessage()
    assert "digestd_outcomes_unwritten_total 1.0" in app.metrics.exposition().decode()
