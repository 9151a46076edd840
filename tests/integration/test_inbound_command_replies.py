"""The request address cannot be used to mail strangers: replies only to an envelope sender
that From names, with fixed words, and capped per recipient, per sender and in total."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes, policy

import pytest
from sqlmodel import func, select

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import CommandReply
from digestd.inbound.addresses import request_address
from digestd.inbound.process import process_message
from tests.conftest import FakeClock
from tests.support.inbound import BOUNCE_ADDRESS, plain
from tests.support.smtp import SmtpTestServer

ATTACKER_PEER = "smtp:203.0.113.9:40001"


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


def command(
    ctx: AppContext,
    *,
    sender: str,
    mail_from: str | None,
    body: str = "help",
    subject: str = "",
    extra: str = "",
    source: str = ATTACKER_PEER,
) -> str:
    to = request_address(ctx.settings)
    raw = plain(sender=sender, to=to, subject=subject, body=body, extra=extra)
    result = process_message(ctx, raw, rcpt_to=[to], mail_from=mail_from, source=source)
    assert result.kind == "command"
    return result.effect


def test_a_forged_from_gets_no_reply(ctx: AppContext, smtp_server: SmtpTestServer) -> None:
    effect = command(ctx, sender="victim@example.net", mail_from="attacker@evil.example")
    assert "no reply (envelope sender is not the From address)" in effect
    assert smtp_server.messages == []


def test_the_reply_goes_to_the_envelope_sender_never_to_reply_to(
    ctx: AppContext, smtp_server: SmtpTestServer
) -> None:
    effect = command(
        ctx,
        sender="Grace <Grace@Example.NET>",
        mail_from="grace@example.net",
        extra="Reply-To: victim@example.com\n",
    )
    assert effect.endswith("sent")
    [sent] = smtp_server.messages
    assert sent.recipients == ["grace@example.net"]


def test_without_an_envelope_the_topmost_return_path_stands_for_it(
    ctx: AppContext, smtp_server: SmtpTestServer
) -> None:
    # IMAP: the delivering server wrote Return-Path on top; a forged one below counts for nothing.
    extra = "Return-Path: <victim@example.com>\n"
    raw_from = "grace@example.net"
    to = request_address(ctx.settings)
    raw = b"Return-Path: <grace@example.net>\r\n" + plain(
        sender=raw_from, to=to, body="help", extra=extra
    )
    result = process_message(ctx, raw, rcpt_to=[to], source="imap:box")
    assert result.effect.endswith("sent")
    assert [m.recipients for m in smtp_server.messages] == [["grace@example.net"]]
    no_envelope = plain(sender="victim@example.com", to=to, body="help")
    assert "no envelope sender" in process_message(ctx, no_envelope, rcpt_to=[to]).effect
    assert len(smtp_server.messages) == 1


def test_replies_never_quote_the_senders_subject_or_body(
    ctx: AppContext, smtp_server: SmtpTestServer
) -> None:
    spam = "CHEAP-PILLS-AT-evil.example"
    command(ctx, sender="a@example.net", mail_from="a@example.net", subject=f"help {spam}")
    command(ctx, sender="b@example.net", mail_from="b@example.net", body=f"{spam} now")
    assert len(smtp_server.messages) == 2
    for sent in smtp_server.messages:
        reply = message_from_bytes(sent.data, policy=policy.default)
        assert reply["Subject"] == "How to use Paper digest by email"
        assert spam.lower() not in sent.data.decode("utf-8", "replace").lower()


def test_thirty_forged_victims_get_at_most_the_per_sender_cap(
    ctx: AppContext, smtp_server: SmtpTestServer
) -> None:
    # The attacker sets envelope and From alike to each victim, all from one SMTP client.
    effects = [
        command(ctx, sender=f"victim{n}@example.com", mail_from=f"victim{n}@example.com")
        for n in range(30)
    ]
    cap = ctx.settings.command_replies_per_hour_sender
    assert sum(e.endswith("sent") for e in effects) == cap == len(smtp_server.messages)
    assert all("hourly limit of replies for this sender" in e for e in effects[cap:])


def test_the_total_cap_holds_across_senders_and_an_hour_later_replies_resume(
    ctx: AppContext, smtp_server: SmtpTestServer, clock: FakeClock
) -> None:
    total = ctx.settings.command_replies_per_hour_total
    effects = [
        command(
            ctx,
            sender=f"p{n}@example.com",
            mail_from=f"p{n}@example.com",
            source=f"smtp:198.51.100.{n + 1}:25000",
        )
        for n in range(total + 5)
    ]
    assert sum(e.endswith("sent") for e in effects) == total
    assert all("hourly limit of replies reached" in e for e in effects[total:])
    clock.advance(hours=1, seconds=1)
    later = command(ctx, sender="late@example.com", mail_from="late@example.com")
    assert later.endswith("sent")


def test_one_address_gets_at_most_its_hourly_cap(
    ctx: AppContext, smtp_server: SmtpTestServer, clock: FakeClock
) -> None:
    cap = ctx.settings.command_replies_per_hour_recipient
    effects = [
        command(
            ctx,
            sender="grace@example.net",
            mail_from="grace@example.net",
            source=f"smtp:192.0.2.{n}:1",
        )
        for n in range(cap + 2)
    ]
    assert [e.endswith("sent") for e in effects] == [True] * cap + [False, False]
    assert "hourly limit of replies to grace@example.net" in effects[-1]


def test_the_per_sender_cap_counts_an_ipv6_64_as_one_sender(
    ctx: AppContext, smtp_server: SmtpTestServer
) -> None:
    cap = ctx.settings.command_replies_per_hour_sender
    effects = [
        command(
            ctx,
            sender=f"v{n}@example.com",
            mail_from=f"v{n}@example.com",
            source=f"smtp:2001:db8:5:6:{n + 1:x}::1:{40000 + n}",
        )
        for n in range(cap + 3)
    ]
    assert sum(e.endswith("sent") for e in effects) == cap


def test_caps_of_zero_mean_no_replies_and_rows_hold_no_addresses(
    ctx: AppContext, smtp_server: SmtpTestServer
) -> None:
    command(ctx, sender="grace@example.net", mail_from="grace@example.net")
    with session_scope(ctx.engine) as session:
        [row] = session.exec(select(CommandReply)).all()
        assert "grace" not in row.recipient and "203.0.113" not in row.sender
    from dataclasses import replace

    quiet = AppContext(
        settings=replace(ctx.settings, command_replies_per_hour_total=0), clock=ctx.clock
    )
    quiet.__dict__["engine"] = ctx.engine
    assert "no reply" in command(quiet, sender="h@example.net", mail_from="h@example.net")
    with session_scope(ctx.engine) as session:
        assert session.exec(select(func.count()).select_from(CommandReply)).one() == 1
    assert len(smtp_server.messages) == 1
