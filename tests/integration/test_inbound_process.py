"""process_message on a real database: what each kind of inbound mail does, and never loses."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlmodel import select

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Delivery, Event, Inbound, Subscriber
from digestd.core.statuses import ConsentVia
from digestd.inbound.addresses import unsubscribe_address, verp_address
from digestd.inbound.process import process_message
from digestd.subscribers import lifecycle, manage, signup
from digestd.subscribers.preferences import Preferences
from tests.conftest import FakeClock
from tests.support.inbound import BOUNCE_ADDRESS, arf, auto_reply, dsn, plain
from tests.support.subscribers import add_subscriber, change

EMAIL = "ada@example.net"


@pytest.fixture
def ctx(app: AppContext) -> Iterator[AppContext]:
    app.settings = replace(app.settings, bounce_address=BOUNCE_ADDRESS)
    yield app


@pytest.fixture
def sqlite_ctx(sqlite_url: str, clock: FakeClock) -> Iterator[AppContext]:
    """Parsing-only cases need no second database."""
    settings = Settings(
        database_url=sqlite_url,
        secret_key="test-secret-key-0123456789",
        bounce_address=BOUNCE_ADDRESS,
    )
    app = AppContext(settings=settings, clock=clock, actor="test")
    app.migrate()
    yield app
    app.dispose()


def _subscriber_with_delivery(ctx: AppContext, email: str = EMAIL) -> tuple[int, int, str]:
    now = ctx.now()
    with session_scope(ctx.engine) as session:
        sub = add_subscriber(session, email, Preferences(), status="active", actor="t", now=now)
        delivery = Delivery(
            subscriber_id=sub.id,  # type: ignore[arg-type]
            period="2026-11-26",
            status="sent",
            message_id=f"<digest.2026-11-26.{sub.id}.abc@example.org>",
            created_at=now,
            sent_at=now,
        )
        session.add(delivery)
        session.flush()
        return sub.id, delivery.id, delivery.message_id  # type: ignore[return-value]


def _status(ctx: AppContext, email: str = EMAIL) -> str:
    with session_scope(ctx.engine) as session:
        sub = session.exec(select(Subscriber).where(Subscriber.email == email)).one()
        return sub.status


def _records(ctx: AppContext) -> list[Inbound]:
    with session_scope(ctx.engine) as session:
        return list(session.exec(select(Inbound).order_by(Inbound.id)).all())  # type: ignore[arg-type]


def test_hard_bounce_to_the_verp_address_bounces_the_subscriber(ctx: AppContext) -> None:
    sub_id, delivery_id, _ = _subscriber_with_delivery(ctx)
    verp = verp_address(ctx.settings, ctx.secret_key, delivery_id)
    result = process_message(ctx, dsn(to=verp, recipient=EMAIL), rcpt_to=[verp], source="t")
    assert result.kind == "bounce" and result.delivery == delivery_id
    assert result.as_json()["recipients"] == [
        {
            "address": EMAIL,
            "status": "5.1.1",
            "action": "failed",
            "hard": True,
            "reason": "userunknown",
        }
    ]
    assert _status(ctx) == "bounced"
    [row] = _records(ctx)
    assert (row.kind, row.subscriber_id, row.delivery_id, row.status_code) == (
        "bounce",
        sub_id,
        delivery_id,
        "5.1.1",
    )
    assert row.severity == "hard" and "bounced" in row.effect and row.headers
    with session_scope(ctx.engine) as session:
        event = session.exec(
            select(Event).where(Event.subscriber_id == sub_id).order_by(Event.id.desc())
        ).first()  # type: ignore[union-attr]
        assert event is not None and event.detail["to"] == "bounced"
        assert "userunknown" in event.detail["reason"] and event.actor == "inbound"


def test_delivery_found_by_message_id_never_by_address_alone(ctx: AppContext) -> None:
    _, delivery_id, message_id = _subscriber_with_delivery(ctx)
    # A forwarded address failed; the returned copy is our message to them.
    by_id = dsn(
        to=BOUNCE_ADDRESS,
        recipient="forwarded@elsewhere.example",
        original_headers=f"Message-ID: {message_id}\nTo: {EMAIL}\n",
    )
    result = process_message(ctx, by_id, rcpt_to=[BOUNCE_ADDRESS], dry_run=True)
    assert (result.subscriber, result.delivery) == (EMAIL, delivery_id)
    assert result.evidence == "message-id"
    # Anyone can write a report naming an address: that alone finds no one (issue 23).
    by_address = dsn(to=BOUNCE_ADDRESS, recipient=EMAIL)
    result = process_message(ctx, by_address, rcpt_to=[BOUNCE_ADDRESS], dry_run=True)
    assert (result.subscriber, result.delivery, result.evidence) == (None, None, None)
    assert _records(ctx) == [] and _status(ctx) == "active"  # dry run: nothing changed


@pytest.mark.backend  # bounce counting on PostgreSQL
def test_soft_bounces_count_once_a_day_and_bounce_only_after_a_run_of_days(
    ctx: AppContext, clock: FakeClock
) -> None:
    _, delivery_id, _ = _subscriber_with_delivery(ctx)
    verp = verp_address(ctx.settings, ctx.secret_key, delivery_id)
    full = dsn(to=verp, recipient=EMAIL, status="5.2.2", diagnostic="smtp; 552 5.2.2 mailbox full")
    limit = ctx.settings.bounce_soft_limit
    for day in range(limit - 1):
        process_message(ctx, full, rcpt_to=[verp])
        process_message(ctx, full, rcpt_to=[verp])  # the same day again: counted once
        assert _status(ctx) == "active", f"day {day + 1}"
        clock.advance(days=1)
    effects = [r.effect for r in _records(ctx)]
    assert effects[0] == f"soft bounce counted (1/{limit})"
    assert effects[1].startswith("soft bounce already counted today")
    process_message(ctx, full, rcpt_to=[verp])
    assert _status(ctx) == "bounced"


def test_a_long_quiet_gap_starts_the_soft_count_over(ctx: AppContext, clock: FakeClock) -> None:
    _, delivery_id, _ = _subscriber_with_delivery(ctx)
    verp = verp_address(ctx.settings, ctx.secret_key, delivery_id)
    full = dsn(to=verp, recipient=EMAIL, status="4.2.2", diagnostic="smtp; 452 4.2.2 over quota")
    for _ in range(ctx.settings.bounce_soft_limit - 1):
        process_message(ctx, full, rcpt_to=[verp])
        clock.advance(days=1)
    clock.advance(days=ctx.settings.bounce_soft_reset_days)
    result = process_message(ctx, full, rcpt_to=[verp])
    assert result.effect == f"soft bounce counted (1/{ctx.settings.bounce_soft_limit})"
    assert _status(ctx) == "active"


@pytest.mark.parametrize(
    ("status", "diagnostic", "action"),
    [
        ("5.7.1", "smtp; 554 5.7.1 Service unavailable; blocked using zen.spamhaus.org", "failed"),
        ("5.7.26", "smtp; 550 5.7.26 DMARC policy of the sender's domain", "failed"),
        ("4.4.1", "smtp; connection timed out", "delayed"),
        ("2.0.0", "smtp; 250 ok", "delivered"),
    ],
)
def test_sender_failures_delays_and_successes_change_nothing(
    ctx: AppContext, status: str, diagnostic: str, action: str
) -> None:
    _, delivery_id, _ = _subscriber_with_delivery(ctx)
    verp = verp_address(ctx.settings, ctx.secret_key, delivery_id)
    raw = dsn(to=verp, recipient=EMAIL, status=status, diagnostic=diagnostic, action=action)
    for _ in range(ctx.settings.bounce_soft_limit + 1):
        result = process_message(ctx, raw, rcpt_to=[verp])
    assert _status(ctx) == "active"
    row = _records(ctx)[-1]
    assert row.delivery_id == delivery_id and row.status_code == status
    if action == "delivered":
        assert result.kind == "delivery_report"
    if status.startswith("5.7"):
        # Recorded and shown: a reputation warning for the admin.
        assert row.severity == "sender" and "about the sender" in row.effect


def test_a_tampered_token_changes_nothing(ctx: AppContext) -> None:
    _, delivery_id, message_id = _subscriber_with_delivery(ctx)
    verp = verp_address(ctx.settings, ctx.secret_key, delivery_id)
    forged = verp.replace("bounces+d", "bounces+d1")
    raw = dsn(to=forged, recipient=EMAIL, original_headers=f"Message-ID: {message_id}\n")
    result = process_message(ctx, raw, rcpt_to=[forged])
    assert result.kind == "bounce" and result.subscriber is None
    assert _status(ctx) == "active"
    assert "token not valid" in _records(ctx)[0].effect


def test_an_auto_reply_is_never_a_bounce(ctx: AppContext) -> None:
    _, delivery_id, message_id = _subscriber_with_delivery(ctx)
    verp = verp_address(ctx.settings, ctx.secret_key, delivery_id)
    raw = auto_reply(to=verp, sender=EMAIL, in_reply_to=message_id)
    for _ in range(ctx.settings.bounce_soft_limit + 1):
        assert process_message(ctx, raw, rcpt_to=[verp]).kind == "auto_reply"
    assert _status(ctx) == "active"


def _sign_up(ctx: AppContext) -> object:
    return signup.request_subscription(
        ctx, EMAIL, Preferences(), via=ConsentVia.WEB, actor="web", mails_per_day=3
    )


@pytest.mark.backend  # the address-mail cap, the inbound store on PostgreSQL
def test_complaint_unsubscribes_and_suppresses_until_an_admin_lifts_it(ctx: AppContext) -> None:
    _, delivery_id, _ = _subscriber_with_delivery(ctx)
    verp = verp_address(ctx.settings, ctx.secret_key, delivery_id)
    result = process_message(ctx, arf(to=verp, recipient=EMAIL), rcpt_to=[verp])
    assert result.kind == "complaint" and _status(ctx) == "unsubscribed"
    with session_scope(ctx.engine) as session:
        sub = session.exec(select(Subscriber).where(Subscriber.email == EMAIL)).one()
        assert sub.suppressed and sub.stopped_by == "complaint"
    # The web form answers as usual, but not even a confirmation mail goes out.
    assert _sign_up(ctx) is None
    assert _status(ctx) == "unsubscribed"
    assert "lifted" in manage.lift(ctx, EMAIL)
    mail = _sign_up(ctx)
    assert mail is not None and mail.kind == "confirm"


def test_bounced_addresses_get_no_confirmation_mail(ctx: AppContext) -> None:
    _, delivery_id, _ = _subscriber_with_delivery(ctx)
    verp = verp_address(ctx.settings, ctx.secret_key, delivery_id)
    process_message(ctx, dsn(to=verp, recipient=EMAIL), rcpt_to=[verp])
    assert _sign_up(ctx) is None
    assert _status(ctx) == "bounced"


def test_mail_to_the_unsubscribe_address_unsubscribes_once(ctx: AppContext) -> None:
    sub_id, _, _ = _subscriber_with_delivery(ctx)
    address = unsubscribe_address(ctx.settings, ctx.secret_key, sub_id, 1)
    raw = plain(sender="someone@else.example", to=address, subject="unsubscribe")
    first = process_message(ctx, raw, rcpt_to=[address])
    second = process_message(ctx, raw)  # from a file: the To header names the address
    assert (first.kind, second.kind) == ("unsubscribe", "unsubscribe")
    # The unsubscribe withdrew every older link, this address too: the second changes nothing.
    assert first.effect == "unsubscribed" and second.effect.endswith("nothing changed")
    assert _status(ctx) == "unsubscribed"
    with session_scope(ctx.engine) as session:
        events = session.exec(select(Event).where(Event.subscriber_id == sub_id)).all()
        ways = [e.detail.get("way") for e in events if e.detail.get("to") == "unsubscribed"]
        assert ways == ["mail"]


def test_an_automatic_unsubscribe_request_still_unsubscribes(ctx: AppContext) -> None:
    sub_id, _, _ = _subscriber_with_delivery(ctx)
    address = unsubscribe_address(ctx.settings, ctx.secret_key, sub_id, 1)
    extra = "Auto-Submitted: auto-generated\n"
    raw = plain(sender=EMAIL, to=address, subject="unsubscribe", extra=extra)
    assert process_message(ctx, raw, rcpt_to=[address]).effect == "unsubscribed"


def test_a_revoked_unsubscribe_address_changes_nothing(ctx: AppContext) -> None:
    sub_id, _, _ = _subscriber_with_delivery(ctx)
    address = unsubscribe_address(ctx.settings, ctx.secret_key, sub_id, 1)
    with session_scope(ctx.engine) as session:
        sub = session.get(Subscriber, sub_id)
        assert sub is not None
        change(session, sub, lifecycle.revoke_links(sub), now=ctx.now())
    result = process_message(ctx, plain(sender=EMAIL, to=address), rcpt_to=[address])
    assert result.kind == "unsubscribe" and "token not valid" in result.effect
    assert _status(ctx) == "active"


def test_forgetting_a_person_erases_what_came_back_from_them(ctx: AppContext) -> None:
    _, delivery_id, _ = _subscriber_with_delivery(ctx)
    verp = verp_address(ctx.settings, ctx.secret_key, delivery_id)
    process_message(ctx, dsn(to=verp, recipient=EMAIL), rcpt_to=[verp])
    process_message(ctx, plain(sender="x@example.net", to=BOUNCE_ADDRESS), rcpt_to=[BOUNCE_ADDRESS])
    manage.forget(ctx, manage.ByEmail(EMAIL))
    assert [r.kind for r in _records(ctx)] == ["unrecognized"]  # not theirs: kept


HOSTILE = {
    "empty": b"",
    "binary": bytes(range(256)) * 50,
    "no header end": b"Subject: " + b"x" * 200_000,
    "header bomb": b"".join(b"X-H%d: %s\r\n" % (i, b"y" * 500) for i in range(5000)) + b"\r\nbody",
    "deep nesting": (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        + b"--b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" * 3000
    ),
    "bad encodings": (
        b"From: =?x-unknown?B?!!!?= <a@b>\r\nSubject: =?utf-8?Q?=FF=FE?=\r\n"
        b"Content-Type: message/delivery-status; charset=nope\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64\r\n"
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_input_is_recorded_never_a_traceback(sqlite_ctx: AppContext, name: str) -> None:
    ctx = sqlite_ctx
    result = process_message(ctx, HOSTILE[name], rcpt_to=[BOUNCE_ADDRESS], source=name)
    assert result.recorded_id is not None
    [row] = _records(ctx)
    assert row.source == name and row.size == len(HOSTILE[name])
    assert sum(len(k) + len(v) for k, v in row.headers) < 20_000  # a capped copy


def test_a_message_over_the_size_limit_keeps_its_headers(sqlite_ctx: AppContext) -> None:
    ctx = sqlite_ctx
    ctx.settings = replace(ctx.settings, inbound_max_bytes=2048)
    raw = plain(sender=EMAIL, to=BOUNCE_ADDRESS, subject="big", body="z" * 10_000)
    result = process_message(ctx, raw, rcpt_to=[BOUNCE_ADDRESS])
    assert result.kind == "unrecognized" and "more than the 2048" in result.summary
    [row] = _records(ctx)
    assert ["Subject", "big"] in row.headers
