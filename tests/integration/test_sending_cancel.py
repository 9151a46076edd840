"""A send pass cancelled mid-batch (a hard stop) records what the server already accepted,
so nothing accepted is sent again and nothing is lost."""

from __future__ import annotations

import asyncio
import threading

import pytest
from sqlmodel import select

from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Delivery
from digestd.delivery import deliveries
from digestd.delivery.sending import send_due
from digestd.mail.smtp_pool import SmtpPool
from tests.support.sending import plan_digests
from tests.support.smtp import SmtpTestServer


async def test_cancel_mid_batch_keeps_accepted_messages_recorded(
    app: AppContext, clock, smtp_server: SmtpTestServer
) -> None:
    plan_digests(app, smtp_server.port, 8)

    three_in = threading.Event()
    release = threading.Event()

    def hold_after_three(_rcpt: str, received: int) -> str | None:
        if received >= 3:
            three_in.set()
            release.wait(timeout=20)  # bounded: the test sets it right after cancelling
            return "451 4.3.0 server going away"
        return None

    smtp_server.set_fault(hold_after_three)
    async with SmtpPool(app.settings, max_connections=1) as pool:
        task = asyncio.create_task(send_due(app, worker_id="w1", pool=pool))
        assert await asyncio.to_thread(three_in.wait, 20)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()

    with session_scope(app.engine) as s:
        rows = list(s.exec(select(Delivery)))
    sent = {d.message_id for d in rows if d.status == "sent"}
    assert sent == {m.message_id for m in smtp_server.messages}
    assert len(sent) == 3
    assert {d.status for d in rows if d.message_id not in sent} == {"sending"}

    # After the lease, another run sends the rest, each once.
    smtp_server.set_fault(None)
    clock.advance(seconds=app.settings.lease_seconds + 1)
    with session_scope(app.engine) as s:
        assert deliveries.release(s, clock()) == 5
    report = await send_due(app, worker_id="w2")
    assert report.sent == 5
    ids = [m.message_id for m in smtp_server.messages]
    assert len(ids) == len(set(ids)) == 8
