"""Internationalized addresses on the sending side, against real relays with and without
SMTPUTF8: IDN domains go out as A-labels (envelope and headers) to any relay; a non-ASCII
local part only to a relay that offers SMTPUTF8, else the delivery fails once, clearly."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_string, policy

import pytest
from sqlmodel import select

from digestd.core.config import PARSERS, Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Delivery
from digestd.delivery.planning import plan_due
from digestd.delivery.sending import send_due
from tests.support.digests import add_subscriber, load_seed_entries
from tests.support.smtp import SmtpTestServer

NOW = datetime(2026, 11, 26, 8, 30, tzinfo=UTC)


@pytest.fixture
def utf8_relay() -> Iterator[SmtpTestServer]:
    server = SmtpTestServer(smtputf8=True).start()
    yield server
    server.stop()


def use_relay(app: AppContext, relay: SmtpTestServer, **settings: object) -> AppContext:
    app.clock.set(NOW)  # type: ignore[attr-defined]
    values = {**app.settings.__dict__, "smtp_port": relay.port, **settings}
    values.setdefault("from_address", "Papers <digest@example.net>")
    app.settings = Settings(**values)
    with session_scope(app.engine) as s:
        load_seed_entries(s, NOW - timedelta(hours=2))
    return app


async def send(app: AppContext, *emails: str) -> list[Delivery]:
    import asyncio

    with session_scope(app.engine) as s:
        for email in emails:
            add_subscriber(s, email, NOW - timedelta(days=10), send_hour=8)
    await asyncio.to_thread(plan_due, app)
    await send_due(app, worker_id="test")
    with session_scope(app.engine) as s:
        return list(s.exec(select(Delivery).order_by(Delivery.id)))


async def test_an_idn_domain_goes_out_as_a_labels_to_a_relay_without_smtputf8(
    app: AppContext, smtp_server: SmtpTestServer
) -> None:
    use_relay(app, smtp_server)
    [delivery] = await send(app, "ada@bücher.example")
    assert delivery.status == "sent", delivery.error
    [got] = smtp_server.messages
    assert got.recipients == ["ada@xn--bcher-kva.example"]
    assert got.data.isascii()
    assert got.message["To"].addresses[0].addr_spec == "ada@xn--bcher-kva.example"


async def test_an_idn_from_and_bounce_domain_go_out_as_a_labels(
    app: AppContext, smtp_server: SmtpTestServer
) -> None:
    # As DIGESTD_FROM and DIGESTD_BOUNCE_ADDRESS would be read from the environment.
    use_relay(
        app,
        smtp_server,
        from_address=PARSERS["DIGESTD_FROM"][1]("Papiere <digest@bücher.example>"),
        bounce_address=PARSERS["DIGESTD_BOUNCE_ADDRESS"][1]("bounces@bücher.example"),
    )
    [delivery] = await send(app, "ada@example.org")
    assert delivery.status == "sent", delivery.error
    [got] = smtp_server.messages
    assert got.envelope_from.endswith("@xn--bcher-kva.example")
    assert got.message["From"].addresses[0].addr_spec == "digest@xn--bcher-kva.example"
    assert got.data.isascii()


async def test_a_non_ascii_local_part_fails_once_with_a_clear_reason_without_smtputf8(
    app: AppContext, smtp_server: SmtpTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    use_relay(app, smtp_server)
    caplog.set_level(logging.INFO)
    [delivery] = await send(app, "jöran@example.org")
    assert smtp_server.messages == []
    assert delivery.status == "failed" and delivery.attempts == 1
    assert delivery.error is not None and "SMTPUTF8" in delivery.error
    assert "non-ASCII" in delivery.error
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info]


async def test_a_non_ascii_local_part_goes_out_when_the_relay_offers_smtputf8(
    app: AppContext, utf8_relay: SmtpTestServer
) -> None:
    use_relay(app, utf8_relay)
    [delivery] = await send(app, "jöran@bücher.example")
    assert delivery.status == "sent", delivery.error
    [got] = utf8_relay.messages
    # The domain as A-labels even here (it costs nothing); the local part as it is.
    assert got.recipients == ["jöran@xn--bcher-kva.example"]
    # Headers in UTF-8 (RFC 6532): read as text, not through the bytes parser's ASCII.
    message = message_from_string(got.data.decode("utf-8"), policy=policy.default)
    assert message["To"].addresses[0].addr_spec == "jöran@xn--bcher-kva.example"
