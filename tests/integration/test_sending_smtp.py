"""Planning and sending to a real SMTP server (aiosmtpd on 127.0.0.1), on SQLite and PostgreSQL:
what arrives, how it looks, and what happens when the server says no."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Delivery, Event, Subscriber
from digestd.core.tokens import read_token
from digestd.delivery.deliveries import entry_ids
from digestd.delivery.planning import plan_due
from digestd.delivery.sending import EMPTY_REASON, send_due
from digestd.mail.smtp_pool import SmtpPool
from tests.support.digests import add_subscriber, load_seed_entries
from tests.support.smtp import SmtpTestServer

NOW = datetime(2026, 11, 26, 8, 30, tzinfo=UTC)


@pytest.fixture
def mail_app(app: AppContext, smtp_server: SmtpTestServer, clock) -> AppContext:
    """The app, its clock at 08:30 UTC, sending to the test server, with the seed papers."""
    clock.set(NOW)
    app.settings = Settings(
        **{
            **app.settings.__dict__,
            "smtp_port": smtp_server.port,
            "base_url": "https://digest.example.net",
            "from_address": "Paper Digest <digest@example.net>",
        }
    )
    with session_scope(app.engine) as s:
        load_seed_entries(s, NOW - timedelta(hours=2))
    return app


def add(app: AppContext, email: str, joined: datetime = NOW - timedelta(days=10), **prefs) -> int:
    prefs.setdefault("send_hour", 8)
    with session_scope(app.engine) as s:
        return add_subscriber(s, email, joined, **prefs).id  # type: ignore[return-value]


async def plan_and_send(app: AppContext) -> None:
    await asyncio_to_thread(plan_due, app)
    await send_due(app, worker_id="test")


async def asyncio_to_thread(fn, *args):
    import asyncio

    return await asyncio.to_thread(fn, *args)


def deliveries(app: AppContext) -> list[Delivery]:
    with session_scope(app.engine) as s:
        return list(s.exec(select(Delivery).order_by(Delivery.id)))


async def test_each_due_subscriber_gets_one_complete_message(
    mail_app: AppContext, smtp_server: SmtpTestServer
) -> None:
    app = mail_app
    ada = add(app, "ada@example.org", name='Ada "Interp", PhD', topics="interpretability")
    add(app, "raj@example.org", topics="retrieval", format="text")
    add(app, "lena@example.org")  # no topics: the most popular papers
    # Joined an hour ago; 20:00 UTC has not come yet today: nothing due.
    add(app, "later@example.org", joined=NOW - timedelta(hours=1), send_hour=20)
    with session_scope(app.engine) as s:
        s.add(Subscriber(email="pending@example.org", status="pending", created_at=NOW))

    await plan_and_send(app)

    got = {m.recipients[0]: m.message for m in smtp_server.messages}
    assert sorted(got) == ["ada@example.org", "lena@example.org", "raj@example.org"]
    ada_msg = got["ada@example.org"]
    assert ada_msg["From"] == "Paper Digest <digest@example.net>"
    assert ada_msg["To"].addresses[0].addr_spec == "ada@example.org"
    assert ada_msg["To"].addresses[0].display_name == 'Ada "Interp", PhD'
    assert "Nov" in ada_msg["Date"] and "2026" in ada_msg["Date"]
    assert re.fullmatch(r"<digest\.2026-11-26\.\d+\.[0-9a-f]+@example\.net>", ada_msg["Message-ID"])
    assert ada_msg["List-Id"] == "Research paper digest <digest.example.net>"
    assert ada_msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # No DIGESTD_BOUNCE_ADDRESS: only the https link (tests/e2e/test_inbound_e2e.py: with one).
    https = ada_msg["List-Unsubscribe"].strip(" <>")
    assert "mailto:" not in ada_msg["List-Unsubscribe"]
    assert https.startswith("https://digest.example.net/unsubscribe/")
    claims = read_token(app.secret_key, "unsubscribe", https.rsplit("/", 1)[1])
    assert claims.subscriber_id == ada
    # Both parts are there, with signed links that verify.
    assert ada_msg.get_content_type() == "multipart/alternative"
    text = ada_msg.get_body(("plain",)).get_content()
    html = ada_msg.get_body(("html",)).get_content()
    assert "https://digest.example.net/unsubscribe/" in text
    assert "https://digest.example.net/preferences/" in html
    pref = re.search(r"https://digest\.example\.net/preferences/([A-Za-z0-9_.\-]+)", text)
    assert pref and read_token(app.secret_key, "preferences", pref.group(1)).subscriber_id == ada
    more = re.search(r", and (\d+) more papers? · \w{3} 26 Nov$", ada_msg["Subject"])
    assert more, ada_msg["Subject"]
    # The text-only subscriber gets a single text/plain message.
    assert got["raj@example.org"].get_content_type() == "text/plain"

    rows = deliveries(app)
    assert {r.status for r in rows} == {"sent"} and len(rows) == 3
    with session_scope(app.engine) as s:
        carried = [e for r in rows for e in entry_ids(s, r.id)]
    assert sum(r.entry_count for r in rows) == len(carried) > 0
    # Subject count matches what was recorded (the top paper, and N more).
    ada_row = next(r for r in rows if r.subscriber_id == ada)
    assert int(more.group(1)) + 1 == ada_row.entry_count
    assert ada_row.message_id == ada_msg["Message-ID"]

    # A second run at the same hour sends nothing more, and the pool reused connections
    # (aiosmtpd's start-up probe is one connection; each run has its own pool).
    await plan_and_send(app)
    assert len(smtp_server.messages) == 3
    assert smtp_server.connections <= 1 + 2 * app.settings.smtp_max_connections


async def test_feed_content_cannot_break_headers(
    mail_app: AppContext, smtp_server: SmtpTestServer
) -> None:
    app = mail_app
    add(app, "eve@example.org", name="Eve\r\nBcc: victim@example.org")
    await plan_and_send(app)
    [received] = smtp_server.messages
    assert received.recipients == ["eve@example.org"]
    msg = received.message
    assert msg["Bcc"] is None
    assert "\n" not in str(msg["To"])


async def test_transient_faults_end_in_exactly_one_delivery_each(
    mail_app: AppContext, smtp_server: SmtpTestServer, clock
) -> None:
    app = mail_app
    emails = [f"user{i}@example.org" for i in range(12)]
    for e in emails:
        add(app, e)
    rng = random.Random(7)

    def flaky(rcpt: str, _n: int) -> str | None:
        roll = rng.random()
        if roll < 0.2:
            return "421 4.3.2 service not available"
        if roll < 0.4:
            return "451 4.3.0 try again later"
        if roll < 0.5:
            return "DROP"
        return None

    smtp_server.set_fault(flaky)
    await asyncio_to_thread(plan_due, app)
    for _ in range(12):  # bounded: each round moves past the longest backoff so far
        await send_due(app, worker_id="test")
        if all(d.status == "sent" for d in deliveries(app)):
            break
        waiting = [d.next_attempt_at for d in deliveries(app) if d.status == "retry"]
        assert waiting, "nothing sent and nothing waiting for a retry"
        clock.set(max(waiting) + timedelta(seconds=1))
    rows = deliveries(app)
    assert [r.status for r in rows] == ["sent"] * 12
    assert any(r.attempts > 1 for r in rows), "the faults should have caused retries"
    ids = [m.message_id for m in smtp_server.messages]
    assert sorted(ids) == sorted(r.message_id for r in rows)  # each exactly once
    assert sorted(m.recipients[0] for m in smtp_server.messages) == sorted(emails)


async def test_a_hard_refusal_bounces_at_once_and_a_sender_refusal_never(
    mail_app: AppContext, smtp_server: SmtpTestServer, clock
) -> None:
    """The synchronous side of the bounce policy (digestd.subscribers.bounce_policy): a 5.1.1 is the
    address itself, so the subscriber is bounced at once; a 5.7.1 block is about us."""
    app = mail_app
    gone = add(app, "gone@example.org")
    blocked = add(app, "blocked@example.org")
    add(app, "fine@example.org")
    replies = {
        "gone": "550 5.1.1 <gone@example.org>: no such user",
        "blocked": "554 5.7.1 Service unavailable; client host blocked using zen.spamhaus.org",
    }
    smtp_server.set_fault(
        lambda rcpt, _n: next((r for k, r in replies.items() if rcpt.startswith(k)), None)
    )
    await plan_and_send(app)
    rows = {d.subscriber_id: d for d in deliveries(app)}
    assert rows[gone].status == "failed" and rows[blocked].status == "failed"
    assert rows[gone].error is not None and "550" in rows[gone].error
    assert "5.1.1" in rows[gone].error and "no such user" in rows[gone].error
    assert [m.recipients for m in smtp_server.messages] == [["fine@example.org"]]
    with session_scope(app.engine) as s:
        sub = s.get(Subscriber, gone)
        assert sub is not None and sub.status == "bounced"
        [event] = s.exec(select(Event).where(Event.action == "subscriber.status")).all()
        assert event.subscriber_id == gone and event.detail["to"] == "bounced"
        assert "userunknown" in event.detail["reason"] and "5.1.1" in event.detail["reply"]
        still = s.get(Subscriber, blocked)
        assert still is not None and still.status == "active" and still.bounce_count == 0

    # Bounced subscribers are not planned again; the other one still is.
    clock.advance(days=1)
    before = len(deliveries(app))
    await asyncio_to_thread(plan_due, app)
    new = deliveries(app)[before:]
    assert [d.subscriber_id for d in new] != [] and gone not in [d.subscriber_id for d in new]


async def test_empty_digest_is_skipped_with_reason_and_nothing_sent(
    mail_app: AppContext, smtp_server: SmtpTestServer
) -> None:
    app = mail_app
    add(app, "niche@example.org", topics='"zymurgy of quasicrystals"')
    await plan_and_send(app)
    [row] = deliveries(app)
    assert row.status == "skipped" and row.error == EMPTY_REASON
    assert smtp_server.messages == []


@pytest.mark.backend  # sending's reads and records on PostgreSQL
async def test_unsubscribed_after_planning_gets_nothing(
    mail_app: AppContext, smtp_server: SmtpTestServer
) -> None:
    app = mail_app
    sid = add(app, "leaver@example.org")
    await asyncio_to_thread(plan_due, app)
    with session_scope(app.engine) as s:
        sub = s.get(Subscriber, sid)
        assert sub is not None
        sub.status = "unsubscribed"
    await send_due(app, worker_id="test")
    [row] = deliveries(app)
    assert row.status == "skipped" and "unsubscribed" in (row.error or "")
    assert smtp_server.messages == []


async def test_many_messages_share_a_bounded_pool(
    mail_app: AppContext, smtp_server: SmtpTestServer
) -> None:
    app = mail_app
    for i in range(30):
        add(app, f"reader{i}@example.org", topics="language models" if i % 2 else "")
    await asyncio_to_thread(plan_due, app)
    before = smtp_server.connections  # aiosmtpd's own start-up probe counts as one
    async with SmtpPool(app.settings, max_connections=2) as pool:
        # Small claim batches: the pass spans five of them and still renders per profile.
        report = await send_due(app, worker_id="test", pool=pool, limit=7)
    assert report.claimed == 30 and report.sent == 30 and len(smtp_server.messages) == 30
    assert smtp_server.connections - before <= 2
    assert report.renders <= 2  # two distinct profiles: rendered once each
