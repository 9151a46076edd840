"""digestd.reporting.stats on a real database (SQLite file and PostgreSQL): each figure comes
from the rows that make it, on the right UTC day, inbound bounces and complaints included."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Delivery, Source
from digestd.core.statuses import DeliveryStatus
from digestd.delivery.deliveries import list_deliveries
from digestd.delivery.planning import plan_due
from digestd.delivery.sending import send_due
from digestd.inbound import store as inbound_store
from digestd.inbound.process import process_message
from digestd.reporting.stats import compute
from digestd.subscribers.lifecycle import STATUS
from tests.conftest import FakeClock
from tests.support.digests import add_subscriber
from tests.support.inbound import BOUNCE_ADDRESS, dsn
from tests.support.sending import add_papers
from tests.support.smtp import SmtpTestServer, free_port
from tests.support.subscribers import record_event

# About what the database itself does (aggregates over JSON and dates in SQL):
# the PostgreSQL twins stay in the quick check (tests/conftest.py).
pytestmark = pytest.mark.backend


def _delivery(sub_id: int, period: str, status: str, **fields: object) -> Delivery:
    return Delivery(
        subscriber_id=sub_id,
        period=period,
        status=status,
        message_id=f"<{sub_id}.{period}@test>",
        **fields,  # type: ignore[arg-type]
    )


def test_figures_per_day_rates_sources_and_oldest_waiting(
    app: AppContext, clock: FakeClock
) -> None:
    now = clock()  # 2026-11-26 06:00 UTC
    yesterday = now - timedelta(days=1)
    with session_scope(app.engine) as s:
        subs = [add_subscriber(s, f"u{i}@example.org", yesterday) for i in range(6)]
        ids = [sub.id or 0 for sub in subs]
        add_subscriber(s, "old@example.org", now - timedelta(days=30))
        s.add_all(
            [
                _delivery(ids[0], "2026-11-26", "sent", due_at=now, sent_at=now, created_at=now),
                _delivery(
                    ids[1],
                    "2026-11-26",
                    "sent",
                    attempts=3,
                    due_at=now,
                    sent_at=now,
                    created_at=now,
                    # the last failure met on the way, kept once sent
                    error="451 4.2.2 mailbox full",
                    smtp_code=451,
                    enhanced_status="4.2.2",
                    severity="soft",
                ),
                _delivery(ids[2], "2026-11-25", "skipped", due_at=yesterday, created_at=yesterday),
                _delivery(
                    ids[3],
                    "2026-11-26",
                    "failed",
                    error="550 5.1.1 no such user",
                    smtp_code=550,
                    enhanced_status="5.1.1",
                    severity="hard",
                    attempts=1,
                    due_at=now,
                    created_at=now,
                ),
                _delivery(
                    ids[4],
                    "2026-11-26",
                    "failed",
                    attempts=8,
                    due_at=now,
                    created_at=now,
                    error="gave up after 8 attempts: 451 4.3.0 try later",
                    smtp_code=451,
                    enhanced_status="4.3.0",
                    severity="soft",
                ),
                _delivery(
                    ids[5],
                    "2026-11-26",
                    "retry",
                    attempts=1,
                    error="452 4.2.2 mailbox full",
                    smtp_code=452,
                    enhanced_status="4.2.2",
                    severity="soft",
                    due_at=now - timedelta(hours=2),
                    next_attempt_at=now - timedelta(hours=1),
                    created_at=now,
                ),
                # long before the period: not counted
                _delivery(
                    ids[0],
                    "2026-10-01",
                    "sent",
                    due_at=now - timedelta(days=56),
                    sent_at=now - timedelta(days=56),
                    created_at=now - timedelta(days=56),
                ),
            ]
        )
        for sub_id, way in ((ids[0], "page"), (ids[1], "mail"), (ids[2], "complaint")):
            record_event(s, sub_id, STATUS, actor="t", now=now, to="unsubscribed", way=way)
        # an event written before `way` existed: the way was the reason
        record_event(
            s, ids[3], STATUS, actor="t", now=yesterday, to="unsubscribed", reason="one-click"
        )
        record_event(s, ids[4], STATUS, actor="t", now=now, to="suspended", reason="admin")
        s.execute(sa.text("UPDATE subscriber SET status = 'unsubscribed' WHERE id IN (1, 2, 3)"))
        for name, extra in (
            ("fresh", {"last_fetch_at": now - timedelta(minutes=10), "last_status": "ok"}),
            (
                "broken",
                {
                    "last_fetch_at": now,
                    "last_status": "error",
                    "failures": 2,
                    "last_error": "HTTP 503",
                },
            ),
            ("quiet", {"last_fetch_at": now - timedelta(hours=10), "last_status": "ok"}),
            ("off", {"enabled": False}),
            ("new", {}),
        ):
            s.add(
                Source(url=f"https://{name}.example.org/feed", name=name, created_at=now, **extra)
            )  # type: ignore[arg-type]

    with session_scope(app.engine) as s:
        stats = compute(s, now, days=3, fetch_interval_minutes=60)
    data = stats.as_json()
    assert [d["date"] for d in data["daily"]] == ["2026-11-24", "2026-11-25", "2026-11-26"]
    today, before = data["daily"][2], data["daily"][1]
    assert (today["sent"], today["skipped"], today["failed"]) == (2, 0, 2)
    assert (today["hard_bounces"], today["soft_bounces"]) == (1, 3)
    assert today["unsubscribes"] == {
        "one-click": 0,
        "page": 1,
        "mail": 1,
        "admin": 0,
        "complaint": 1,
    }
    assert today["complaints"] == 0  # complaints are inbound records (none yet)
    assert (before["skipped"], before["new_confirmed"], before["unsubscribes"]["one-click"]) == (
        1,
        6,
        1,
    )
    assert data["subscribers"]["unsubscribed"] == 3 and data["subscribers"]["active"] == 4
    assert data["rates"]["bounces"]["count"] == 1 and data["rates"]["bounces"]["of"] == 4
    assert data["rates"]["complaints"]["of"] == 2
    assert [(x["name"], x["health"]) for x in data["sources"]] == [
        ("fresh", "ok"),
        ("broken", "failing"),
        ("quiet", "stale"),
        ("off", "disabled"),
        ("new", "never fetched"),
    ]
    oldest = data["oldest_due"]
    assert (oldest["email"], oldest["waiting_seconds"]) == ("u5@example.org", 7200)

    # Mail that came back after the server accepted it adds its bounces and complaints.
    with session_scope(app.engine) as s:
        for kind, severity in (
            ("bounce", "hard"),
            ("bounce", "hard"),
            ("bounce", "soft"),
            ("complaint", ""),
            ("auto_reply", ""),
        ):
            inbound_store.record(
                s, received_at=now, kind=kind, severity=severity, subscriber_id=ids[0]
            )
        inbound_store.record(
            s, received_at=yesterday, kind="bounce", severity="hard", subscriber_id=ids[1]
        )
    with session_scope(app.engine) as s:
        data = compute(s, now, days=3, fetch_interval_minutes=60).as_json()
    today, before = data["daily"][2], data["daily"][1]
    assert (today["hard_bounces"], today["soft_bounces"], today["complaints"]) == (3, 4, 1)
    assert before["hard_bounces"] == 1
    assert data["rates"]["complaints"] == {
        "count": 1,
        "of": 2,
        "rate": 0.5,
        "limit": 0.003,
        "aim": 0.001,
        "level": "over",
    }


async def test_unmatched_bounces_and_a_relay_outage_leave_the_bounce_rate_unchanged(
    app: AppContext, clock: FakeClock, smtp_server: SmtpTestServer
) -> None:
    """The list's bounce rate counts only the list's addresses: bounces that match no
    subscriber and failures of our own relay are counted apart, through the real send path
    (a refused connection) and the real inbound path (a DSN naming a stranger)."""
    now = clock()
    with session_scope(app.engine) as s:
        add_papers(s, now - timedelta(hours=1))
        for i in range(10):
            add_subscriber(s, f"r{i}@example.org", now - timedelta(days=3))
        add_subscriber(s, "gone@example.org", now - timedelta(days=3))
    smtp_server.set_fault(lambda rcpt, _n: "550 5.1.1 no such user" if "gone" in rcpt else None)
    app.settings = Settings(**{**app.settings.__dict__, "smtp_port": smtp_server.port})
    assert plan_due(app).planned == 11
    await send_due(app, worker_id="before")

    def figures() -> dict[str, Any]:
        with session_scope(app.engine) as s:
            return compute(s, clock(), days=2, fetch_interval_minutes=60).as_json()

    before = figures()
    assert (before["rates"]["bounces"]["count"], before["rates"]["bounces"]["of"]) == (1, 11)

    # The relay goes down: five more digests cannot be handed to it. Two had used up their
    # attempts already, so they fail for good; three wait for a retry.
    with session_scope(app.engine) as s:
        for i in range(5):
            add_subscriber(s, f"late{i}@example.org", now - timedelta(days=3))
    assert plan_due(app).planned == 5
    with session_scope(app.engine) as s:
        s.execute(
            sa.text(
                "UPDATE delivery SET attempts = 7 WHERE status = 'pending' AND subscriber_id IN"
                " (SELECT id FROM subscriber WHERE email IN ('late0@example.org',"
                " 'late1@example.org'))"
            )
        )
    app.settings = Settings(**{**app.settings.__dict__, "smtp_port": free_port()})
    down = await send_due(app, worker_id="outage")
    assert (down.sent, down.retry, down.failed) == (0, 3, 2)
    # Bounces of addresses that are no subscriber of ours (a stranger, a typo).
    for stranger in ("stranger@elsewhere.example", "nobody@typo.example", "x@gone.example"):
        result = process_message(app, dsn(to=BOUNCE_ADDRESS, recipient=stranger))
        assert result.kind == "bounce" and result.subscriber is None

    after = figures()
    assert after["rates"]["bounces"] == before["rates"]["bounces"]
    totals = after["totals"]  # failures count on the day a digest was due, sent on the day sent
    assert (totals["relay_failures"], totals["unmatched_bounces"]) == (5, 3)
    assert (totals["hard_bounces"], totals["soft_bounces"]) == (1, 0)
    with session_scope(app.engine) as s:
        failed = [r for r in list_deliveries(s, status=DeliveryStatus.FAILED) if r.severity]
    assert sorted(r.severity or "" for r in failed) == ["hard", "ours", "ours"]
