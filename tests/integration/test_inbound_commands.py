"""Email commands to the request address, answered over a real SMTP server, without loops."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from email import message_from_bytes, policy

import pytest
from sqlmodel import select

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Subscriber
from digestd.inbound.addresses import request_address
from digestd.inbound.process import process_message
from digestd.subscribers import lifecycle
from digestd.subscribers.optin import MAILS_PER_ADDRESS_PER_DAY as MAX_REPLIES_PER_DAY
from digestd.subscribers.preferences import Preferences
from tests.conftest import FakeClock
from tests.support.inbound import BOUNCE_ADDRESS, plain
from tests.support.smtp import SmtpTestServer
from tests.support.subscribers import add_subscriber, change

PERSON = "grace@example.net"


@pytest.fixture
def ctx(sqlite_url: str, clock: FakeClock, smtp_server: SmtpTestServer) -> Iterator[AppContext]:
    settings = Settings(
        database_url=sqlite_url,
        secret_key="test-secret-key-0123456789",
        bounce_address=BOUNCE_ADDRESS,
        smtp_port=smtp_server.port,
        from_address="Paper digest <digest@example.org>",
        base_url="https://digest.example.org",
    )
    app = AppContext(settings=settings, clock=clock, actor="test")
    app.migrate()
    yield app
    app.dispose()


def _command(
    ctx: AppContext,
    body: str,
    *,
    sender: str = PERSON,
    extra: str = "",
    mail_from: str | None = None,
) -> str:
    to = request_address(ctx.settings)
    raw = plain(sender=sender, to=to, subject="", body=body, extra=extra)
    result = process_message(
        ctx, raw, rcpt_to=[to], mail_from=mail_from if mail_from is not None else sender
    )
    # An auto-reply is recognised as one before it is read as a command: no reply either way.
    assert result.kind in ("command", "auto_reply")
    return result.effect if result.kind == "command" else "no reply (an automatic reply)"


def test_help_is_answered_as_an_automatic_reply_from_the_null_sender(
    ctx: AppContext, smtp_server: SmtpTestServer
) -> None:
    effect = _command(ctx, "help")
    assert effect == "help: help sent"
    [sent] = smtp_server.messages
    assert sent.envelope_from in ("", "<>") and sent.recipients == [PERSON]
    reply = message_from_bytes(sent.data, policy=policy.default)
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["In-Reply-To"]
    body = reply.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "subscribe [topics]" in body and request_address(ctx.settings) in body


@pytest.mark.parametrize(
    ("sender", "extra", "mail_from", "why"),
    [
        (PERSON, "", "", "null sender"),
        ("MAILER-DAEMON@mx.example.net", "", None, "mail system"),
        (PERSON, "Auto-Submitted: auto-replied\n", None, "automatic reply"),
        (PERSON, "X-Autoreply: yes\n", None, "automatic reply"),
        (PERSON, "List-Id: <papers.lists.example.net>\n", None, "mailing list"),
        (PERSON, "Precedence: bulk\n", None, "mailing list"),
    ],
)
def test_no_reply_to_loops(
    ctx: AppContext,
    smtp_server: SmtpTestServer,
    sender: str,
    extra: str,
    mail_from: str | None,
    why: str,
) -> None:
    effect = _command(ctx, "help", sender=sender, extra=extra, mail_from=mail_from)
    assert "no reply" in effect and why in effect
    assert smtp_server.messages == []


def test_subscribe_by_mail_is_the_web_forms_double_opt_in(
    ctx: AppContext, smtp_server: SmtpTestServer
) -> None:
    effect = _command(ctx, "subscribe attention heads, KV cache")
    assert effect == "subscribe: confirm mail sent"
    with session_scope(ctx.engine) as session:
        sub = session.exec(select(Subscriber).where(Subscriber.email == PERSON)).one()
        assert sub.status == "pending" and sub.topics == "attention heads, KV cache"
    [sent] = smtp_server.messages
    reply = message_from_bytes(sent.data, policy=policy.default)
    assert reply["Auto-Submitted"] == "auto-replied" and sent.envelope_from in ("", "<>")
    assert "https://digest.example.org/confirm/" in reply.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_a_suppressed_address_gets_nothing(ctx: AppContext, smtp_server: SmtpTestServer) -> None:
    with session_scope(ctx.engine) as session:
        sub = add_subscriber(
            session, PERSON, Preferences(), status="active", actor="t", now=ctx.now()
        )
        change(session, sub, lifecycle.bounce(sub, now=ctx.now(), reason="user"), now=ctx.now())
    for body in ("subscribe", "unsubscribe", "help"):
        assert "suppressed" in _command(ctx, body)
    assert smtp_server.messages == []


def test_unsubscribe_by_mail_sends_a_link_and_changes_nothing_yet(
    ctx: AppContext, smtp_server: SmtpTestServer
) -> None:
    with session_scope(ctx.engine) as session:
        add_subscriber(session, PERSON, Preferences(), status="active", actor="t", now=ctx.now())
    assert _command(ctx, "unsubscribe") == "unsubscribe: confirmation link sent"
    [sent] = smtp_server.messages
    body = message_from_bytes(sent.data, policy=policy.default).get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "https://digest.example.org/unsubscribe/" in body
    with session_scope(ctx.engine) as session:
        assert session.exec(select(Subscriber.status)).one() == "active"  # From can be forged
    assert "not subscribed" in _command(ctx, "unsubscribe", sender="stranger@example.net")
    assert len(smtp_server.messages) == 1


def test_replies_to_one_address_are_limited_per_day(
    ctx: AppContext, smtp_server: SmtpTestServer, clock: FakeClock
) -> None:
    for _ in range(MAX_REPLIES_PER_DAY):
        assert _command(ctx, "help").endswith("sent")
        clock.advance(hours=1, seconds=1)  # past the hourly cap per recipient
    assert "daily limit" in _command(ctx, "help")
    clock.advance(days=1, minutes=1)
    assert _command(ctx, "help").endswith("sent")
    assert len(smtp_server.messages) == MAX_REPLIES_PER_DAY + 1


def test_confirmations_and_replies_share_one_daily_cap_per_address(
    ctx: AppContext, smtp_server: SmtpTestServer
) -> None:
    """3 mails a day to one address in all (as the README says), not 3 confirmations plus
    3 command replies: a forger mixing commands and sign-ups gets no more."""
    from digestd.core.statuses import ConsentVia
    from digestd.subscribers import signup

    # The hourly reply caps (inbound/reply_limits) are another limit: out of the way here.
    ctx.settings = replace(ctx.settings, command_replies_per_hour_recipient=100)
    assert _command(ctx, "help").endswith("sent")
    assert _command(ctx, "subscribe") == "subscribe: confirm mail sent"
    web = signup.request_subscription(
        ctx, PERSON, Preferences(), via=ConsentVia.WEB, actor="web", ip="192.0.2.1"
    )
    assert web is not None  # the third mail of the day
    assert "daily limit" in _command(ctx, "help")
    assert _command(ctx, "subscribe").startswith("subscribe: no mail")
    again = signup.request_subscription(
        ctx, PERSON, Preferences(), via=ConsentVia.WEB, actor="web", ip="192.0.2.1"
    )
    assert again is None
    assert len(smtp_server.messages) == 2  # the web's mail is the caller's to send
