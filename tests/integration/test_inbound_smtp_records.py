"""The listener with the real processing into a real database (SQLite file and
PostgreSQL): a DSN sent to a delivery's VERP address marks its subscriber bounced and is
recorded; junk is recorded as unrecognized and still answered 250 (the MTA never retries
it for ever); relaying and oversize attempts are refused and leave no record."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy import select

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Delivery, Subscriber
from digestd.inbound.addresses import verp_address
from digestd.inbound.smtp_listener import listener_for
from tests.conftest import FIXTURES
from tests.support.daemon import SECRET, seed_due_deliveries
from tests.support.inbound import BOUNCE_ADDRESS, dsn
from tests.support.listener import ListenerThread

BOUNCE = BOUNCE_ADDRESS


@pytest.fixture
def ctx(db_url: str) -> Iterator[AppContext]:
    seed_due_deliveries(db_url, 2)
    settings = Settings(
        database_url=db_url,
        secret_key=SECRET,
        bounce_address=BOUNCE,
        inbound_max_bytes=64 * 1024,
        smtp_port=9,  # no command here answers by mail
    )
    app = AppContext(settings=settings, actor="test")
    yield app
    app.dispose()


@pytest.fixture
def listener(ctx: AppContext) -> Iterator[ListenerThread]:
    server = ListenerThread(listener_for(ctx)).start()
    yield server
    server.stop()


def deliveries(ctx: AppContext) -> list[tuple[int, str, str, str]]:
    with session_scope(ctx.engine) as session:
        rows = session.execute(
            select(Delivery.id, Delivery.message_id, Subscriber.email, Subscriber.status)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .order_by(Delivery.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def inbound_rows(ctx: AppContext) -> list[tuple[str, str]]:
    from digestd.inbound import store

    with session_scope(ctx.engine) as session:
        return [(row.kind, email or "") for row, email in store.list_inbound(session, limit=100)]


def send(server: ListenerThread, rcpt: str, raw: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP(server.host, server.port, timeout=30) as client:
        client.ehlo("mx.example.net")
        client.mail("")
        code, reply = client.rcpt(rcpt)
        if code != 250:
            return code, reply
        return client.data(raw)


@pytest.mark.backend  # the inbound listing on PostgreSQL
def test_a_dsn_to_the_verp_address_bounces_the_subscriber(
    ctx: AppContext, listener: ListenerThread
) -> None:
    (first_id, message_id, email, status), (_, _, other, _) = deliveries(ctx)
    assert status == "active"
    verp = verp_address(ctx.settings, ctx.secret_key, first_id)
    code, reply = send(
        listener,
        verp,
        dsn(to=verp, recipient=email, original_headers=f"Message-ID: {message_id}\n"),
    )
    assert code == 250 and reply.startswith(b"2.0.0 Recorded as bounce #"), reply
    statuses = {e: s for _, _, e, s in deliveries(ctx)}
    assert statuses == {email: "bounced", other: "active"}
    assert inbound_rows(ctx) == [("bounce", email)]


def test_junk_is_recorded_as_unrecognized_and_answered_250(
    ctx: AppContext, listener: ListenerThread
) -> None:
    junk = b"\x00\xff not a mail at all\r\n" + bytes(range(256)) * 8 + b"\r\n"
    code, reply = send(listener, BOUNCE, junk)
    assert code == 250 and reply.startswith(b"2.0.0 Recorded as unrecognized #"), reply
    assert inbound_rows(ctx) == [("unrecognized", "")]
    assert {s for _, _, _, s in deliveries(ctx)} == {"active"}


def test_a_tampered_verp_token_changes_nothing_but_is_recorded(
    ctx: AppContext, listener: ListenerThread
) -> None:
    (first_id, _, _, _), _ = deliveries(ctx)
    verp = verp_address(ctx.settings, ctx.secret_key, first_id)
    local, domain = verp.split("@")
    tampered = f"{local[:-1]}{'a' if local[-1] != 'a' else 'b'}@{domain}"
    code, reply = send(listener, tampered, dsn(to=tampered, recipient="x@nowhere.test"))
    assert code == 250, reply
    assert {s for _, _, _, s in deliveries(ctx)} == {"active"}
    assert len(inbound_rows(ctx)) == 1


def test_relaying_and_oversize_are_refused_and_leave_no_record(
    ctx: AppContext, listener: ListenerThread
) -> None:
    with smtplib.SMTP(listener.host, listener.port, timeout=30) as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail("", ["victim@example.com"], b"Subject: relay me\r\n\r\nx\r\n")
        with pytest.raises(smtplib.SMTPSenderRefused) as big:
            client.sendmail("", [BOUNCE], b"Subject: big\r\n\r\n" + b"x" * 70_000 + b"\r\n")
        assert big.value.smtp_code == 552
    assert inbound_rows(ctx) == []


def test_the_bounce_domain_is_the_only_one_accepted(ctx: AppContext) -> None:
    # Without DIGESTD_BOUNCE_ADDRESS nothing is ours: the listener takes no mail at all.
    app = AppContext(settings=replace(ctx.settings, bounce_address=None), actor="test")
    server = ListenerThread(listener_for(app)).start()
    try:
        with smtplib.SMTP(server.host, server.port, timeout=30) as client:
            client.ehlo("mx.example.net")
            client.mail("")
            assert client.rcpt(BOUNCE)[0] == 550
    finally:
        server.stop()
        app.dispose()


def test_every_corpus_message_is_answered_250_and_recorded(
    ctx: AppContext, listener: ListenerThread
) -> None:
    """The promise to the sending MTA, over all of flufl.bounce's and Sisimai's samples
    (one of them carries a NUL byte, which PostgreSQL's text columns refuse)."""
    corpus = sorted((FIXTURES / "bounces").glob("*/*.*"))
    # (the few larger than this test's 64 kB cap get 552, as tested above)
    corpus = [p for p in corpus if p.suffix in (".txt", ".eml") and p.stat().st_size < 60_000]
    assert len(corpus) > 300
    answers = set()
    with smtplib.SMTP(listener.host, listener.port, timeout=60) as client:
        client.ehlo("mx.example.net")
        for path in corpus:
            client.mail("")
            client.rcpt(BOUNCE)
            code, reply = client.data(path.read_bytes())
            answers.add(code)
            assert code == 250, (path.name, reply)
    assert answers == {250}
    assert len(inbound_rows(ctx)) == min(len(corpus), 100)  # the listing's own limit
