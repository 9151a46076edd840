"""Pipelined sending (the next batch is claimed while one is on the wire): a stop in the
middle of a pass leaves nothing claimed, and the next pass sends the rest, each once."""

from __future__ import annotations

import threading

import pytest
from sqlmodel import select

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Delivery
from digestd.delivery import recorder
from digestd.delivery.deliveries import release
from digestd.delivery.sending import send_due
from digestd.mail.smtp_pool import SmtpPool
from tests.support.sending import plan_digests
from tests.support.smtp import SmtpTestServer

# About what the database itself does (leases held and handed back while rows are being recorded):
# the PostgreSQL twins stay in the quick check (tests/conftest.py).
pytestmark = pytest.mark.backend


async def test_stop_mid_pass_hands_back_the_batch_claimed_ahead(
    app: AppContext, smtp_server: SmtpTestServer
) -> None:
    plan_digests(app, smtp_server.port, 12)

    stop = threading.Event()

    def stop_after_four(_rcpt: str, received: int) -> str | None:
        if received >= 3:  # the 4th message is being accepted: ask the pass to stop
            stop.set()
        return None

    smtp_server.set_fault(stop_after_four)
    async with SmtpPool(app.settings, max_connections=1) as pool:
        report = await send_due(app, worker_id="w1", stop=stop, pool=pool, limit=3)

    with session_scope(app.engine) as s:
        rows = list(s.exec(select(Delivery)))
    received = [m.message_id for m in smtp_server.messages]
    sent = {d.message_id for d in rows if d.status == "sent"}
    assert sent == set(received) and len(received) == len(sent) == report.sent >= 4
    # Nothing is left claimed: the rest of the batch on the wire and the batch claimed
    # ahead of it are pending again, claimable at once by the next pass.
    assert {d.status for d in rows if d.message_id not in sent} == {"pending"}
    assert all(d.claimed_by is None for d in rows)
    # The batch claimed ahead (3 rows) plus the unsent rest of the batch on the wire were
    # claimed (an attempt counted) and handed back without being sent.
    handed_back = [d for d in rows if d.status == "pending" and d.attempts >= 1]
    assert len(handed_back) >= 3

    smtp_server.set_fault(None)
    again = await send_due(app, worker_id="w2")
    assert again.sent == 12 - len(sent)
    ids = [m.message_id for m in smtp_server.messages]
    assert len(ids) == len(set(ids)) == 12


async def test_outcomes_are_committed_in_small_groups_as_replies_come_in(
    app: AppContext, smtp_server: SmtpTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One claimed batch of 200 is recorded in groups of at most GROUP_MAX, and never more
    than UNRECORDED_MAX messages are on the wire or accepted-but-unrecorded at once (what a
    crash at the worst moment would re-send)."""
    plan_digests(app, smtp_server.port, 200)
    recorded_at: list[int] = []  # how many the server had accepted at each group commit
    groups: list[int] = []
    original = recorder.record_group

    def spy(ctx: AppContext, outcomes, worker_id: str) -> list[int]:
        recorded_at.append(len(smtp_server.messages))
        groups.append(len(outcomes))
        return original(ctx, outcomes, worker_id)

    monkeypatch.setattr(recorder, "record_group", spy)
    async with SmtpPool(app.settings, max_connections=8) as pool:
        report = await send_due(app, worker_id="w1", pool=pool, limit=500)
    assert report.sent == 200 and len(smtp_server.messages) == 200
    assert sum(groups) == 200 and max(groups) <= recorder.GROUP_MAX and len(groups) >= 4
    assert 0 < report.unrecorded_peak <= recorder.UNRECORDED_MAX
    # Before each commit, at most UNRECORDED_MAX accepted messages were still unrecorded.
    committed = 0
    for accepted, size in zip(recorded_at, groups, strict=True):
        assert accepted - committed <= recorder.UNRECORDED_MAX
        committed += size


async def test_a_pass_longer_than_the_lease_keeps_what_it_holds(
    app: AppContext, smtp_server: SmtpTestServer, clock
) -> None:
    """A pass that outlasts the lease (a slow server, a rate limit) renews it: housekeeping,
    running all along, hands nothing back, and nothing is sent twice."""
    plan_digests(app, smtp_server.port, 12)
    app.settings = Settings(**{**app.settings.__dict__, "lease_seconds": 60})
    released: list[int] = []

    def slow_server_and_housekeeping(_rcpt: str, _received: int) -> str | None:
        clock.advance(seconds=10)  # each message takes 10 s: the pass lasts two leases
        with session_scope(app.engine) as s:
            released.append(release(s, clock()))
        return None

    smtp_server.set_fault(slow_server_and_housekeeping)
    async with SmtpPool(app.settings, max_connections=1) as pool:
        report = await send_due(app, worker_id="w1", pool=pool, limit=3)

    assert sum(released) == 0 and len(released) == 12
    ids = [m.message_id for m in smtp_server.messages]
    assert len(ids) == len(set(ids)) == 12 == report.sent
    with session_scope(app.engine) as s:
        rows = list(s.exec(select(Delivery)))
    assert {d.status for d in rows} == {"sent"} and all(d.attempts == 1 for d in rows)
