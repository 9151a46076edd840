"""Evidence before action (issue 23, finding 2): a bounce or a complaint changes a subscriber
only when it is tied to a message we sent them; anything else is recorded and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlmodel import select

from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Delivery, Event, Inbound, Subscriber
from digestd.inbound.addresses import request_address, unsubscribe_address, verp_address
from digestd.inbound.evidence import Claims
from digestd.inbound.process import process_message
from digestd.inbound.reading import Reading, RecipientReport
from digestd.inbound.record import Received, record_reading
from digestd.mail.reasons import read_failure
from digestd.subscribers.preferences import Preferences
from tests.support.inbound import BOUNCE_ADDRESS, arf, dsn
from tests.support.subscribers import add_subscriber

ADA, BOB = "ada@example.net", "bob@example.net"


@pytest.fixture
def ctx(app: AppContext) -> Iterator[AppContext]:
    app.settings = replace(app.settings, bounce_address=BOUNCE_ADDRESS)
    yield app


def _with_delivery(ctx: AppContext, email: str) -> tuple[int, int, str]:
    """An active subscriber and the digest we sent them (its Message-ID is random)."""
    now = ctx.now()
    with session_scope(ctx.engine) as session:
        sub = add_subscriber(session, email, Preferences(), status="active", actor="t", now=now)
        assert sub.id is not None
        delivery = Delivery(
            subscriber_id=sub.id,
            period="2026-11-26",
            status="sent",
            message_id=f"<digest.2026-11-26.{sub.id}.9f3c2a71be04@example.org>",
            created_at=now,
            sent_at=now,
        )
        session.add(delivery)
        session.flush()
        assert delivery.id is not None
        return sub.id, delivery.id, delivery.message_id


def _status(ctx: AppContext, email: str) -> str:
    with session_scope(ctx.engine) as session:
        return session.exec(select(Subscriber).where(Subscriber.email == email)).one().status


def _rows(ctx: AppContext) -> list[Inbound]:
    with session_scope(ctx.engine) as session:
        return list(session.exec(select(Inbound).order_by(Inbound.id)).all())  # type: ignore[arg-type]


def _events(ctx: AppContext, sub_id: int) -> int:
    with session_scope(ctx.engine) as session:
        return len(session.exec(select(Event).where(Event.subscriber_id == sub_id)).all())


FORGED = {
    "dsn to bounces@": lambda s: (dsn(to=BOUNCE_ADDRESS, recipient=ADA), [BOUNCE_ADDRESS]),
    "arf to bounces@": lambda s: (arf(to=BOUNCE_ADDRESS, recipient=ADA), [BOUNCE_ADDRESS]),
    "dsn to the request address": lambda s: (
        dsn(to=request_address(s), recipient=ADA),
        [request_address(s)],
    ),
    "arf to the request address": lambda s: (
        arf(to=request_address(s), recipient=ADA),
        [request_address(s)],
    ),
}


@pytest.mark.parametrize("name", sorted(FORGED))
def test_a_forged_report_naming_an_address_is_recorded_and_changes_nothing(
    ctx: AppContext, name: str
) -> None:
    sub_id, _, _ = _with_delivery(ctx, ADA)
    raw, rcpt = FORGED[name](ctx.settings)
    events = _events(ctx, sub_id)
    result = process_message(ctx, raw, rcpt_to=rcpt, source=name)
    assert result.kind == ("bounce" if name.startswith("dsn") else "complaint")
    assert (result.subscriber, result.delivery, result.evidence) == (None, None, None)
    assert _status(ctx, ADA) == "active" and _events(ctx, sub_id) == events
    [row] = _rows(ctx)
    # Recorded with its kind and the address it names, linked to no one.
    assert (row.kind, row.address, row.subscriber_id, row.evidence) == (
        result.kind,
        ADA,
        None,
        "",
    )
    assert row.effect == "no evidence: nothing changed"
    assert [r["address"] for r in row.recipients] == [ADA]


@pytest.mark.parametrize("report", ["dsn", "arf"])
def test_the_same_report_carrying_our_message_id_for_that_address_acts(
    ctx: AppContext, report: str
) -> None:
    sub_id, delivery_id, message_id = _with_delivery(ctx, ADA)
    returned = f"Message-ID: {message_id}\nTo: {ADA}\nSubject: digest\n"
    build = dsn if report == "dsn" else arf
    raw = build(to=BOUNCE_ADDRESS, recipient=ADA, original_headers=returned)
    result = process_message(ctx, raw, rcpt_to=[BOUNCE_ADDRESS])
    assert (result.subscriber, result.delivery, result.evidence) == (ADA, delivery_id, "message-id")
    assert _status(ctx, ADA) == ("bounced" if report == "dsn" else "unsubscribed")
    [row] = _rows(ctx)
    assert (row.subscriber_id, row.delivery_id, row.evidence) == (sub_id, delivery_id, "message-id")


def test_our_message_id_for_one_address_does_not_act_on_another(ctx: AppContext) -> None:
    _with_delivery(ctx, ADA)
    _, _, bobs_message_id = _with_delivery(ctx, BOB)
    # Bob's Message-ID (Bob forwarded his digest, say), a report naming Ada.
    returned = f"Message-ID: {bobs_message_id}\nTo: {ADA}\n"
    result = process_message(
        ctx, dsn(to=BOUNCE_ADDRESS, recipient=ADA, original_headers=returned), rcpt_to=[]
    )
    assert result.evidence is None and result.subscriber is None
    assert (_status(ctx, ADA), _status(ctx, BOB)) == ("active", "active")
    assert "of a delivery to another address" in _rows(ctx)[0].effect


def test_in_reply_to_our_message_id_is_evidence(ctx: AppContext) -> None:
    """Some MTAs return only the headers they need: In-Reply-To names our message."""
    _, delivery_id, message_id = _with_delivery(ctx, ADA)
    raw = dsn(to=BOUNCE_ADDRESS, recipient=ADA, original_headers="X-Nothing: returned\n")
    raw = raw.replace(b"Auto-Submitted:", f"In-Reply-To: {message_id}\r\nAuto-Submitted:".encode())
    result = process_message(ctx, raw, rcpt_to=[BOUNCE_ADDRESS])
    assert (result.delivery, result.evidence) == (delivery_id, "message-id")
    assert _status(ctx, ADA) == "bounced"


def test_a_verp_token_for_one_subscriber_naming_another_never_touches_the_other(
    ctx: AppContext,
) -> None:
    a_id, a_delivery, _ = _with_delivery(ctx, ADA)
    _with_delivery(ctx, BOB)
    verp = verp_address(ctx.settings, ctx.secret_key, a_delivery)
    result = process_message(ctx, dsn(to=verp, recipient=BOB), rcpt_to=[verp])
    assert (result.subscriber, result.delivery, result.evidence) == (ADA, a_delivery, "verp")
    assert _status(ctx, BOB) == "active"
    [row] = _rows(ctx)
    assert row.subscriber_id == a_id


def test_a_report_to_a_subscribers_unsubscribe_address_bounces_no_one(ctx: AppContext) -> None:
    """The mailto: of List-Unsubscribe is printed in every digest, forwarded or not: it may
    unsubscribe (its own rule), but it is not evidence that mail to anyone bounced."""
    a_id, _, _ = _with_delivery(ctx, ADA)
    _with_delivery(ctx, BOB)
    mailto = unsubscribe_address(ctx.settings, ctx.secret_key, a_id, 1)
    for raw in (dsn(to=mailto, recipient=BOB), dsn(to=mailto, recipient=ADA)):
        result = process_message(ctx, raw, rcpt_to=[mailto])
        assert result.kind == "bounce" and result.evidence is None
    assert (_status(ctx, ADA), _status(ctx, BOB)) == ("active", "active")


@pytest.mark.backend  # the evidence's delivery lookup on PostgreSQL
def test_a_provider_verified_event_names_a_recipient_we_sent_to(ctx: AppContext) -> None:
    """What a webhook does: a Reading from the verified event, then record_reading."""
    _, delivery_id, _ = _with_delivery(ctx, ADA)
    failure = read_failure("5.1.1", "smtp; 550 5.1.1 user unknown", "failed")
    reading = Reading(
        kind="bounce", recipients=[RecipientReport(ADA, "failed", "5.1.1", "", failure)]
    )
    unverified = record_reading(ctx, reading, received=Received(source="webhook:test"))
    assert unverified.evidence is None and _status(ctx, ADA) == "active"
    verified = record_reading(
        ctx, reading, Claims(provider="test"), received=Received(source="webhook:test")
    )
    assert (verified.subscriber, verified.delivery, verified.evidence) == (
        ADA,
        delivery_id,
        "provider",
    )
    assert _status(ctx, ADA) == "bounced"
    assert [r.evidence for r in _rows(ctx)] == ["", "provider"]
