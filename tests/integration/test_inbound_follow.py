"""`follow NAME` and `unfollow NAME` by mail, on SQLite and PostgreSQL: From can be forged,
so the reply (to the address itself, under the reply rules) is the reader's preferences
link with the author filled in; their press of "Save preferences" follows."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from email import message_from_bytes, policy
from urllib.parse import urlsplit

import pytest

from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.inbound.addresses import request_address
from digestd.inbound.process import process_message
from digestd.subscribers.preferences import Preferences
from tests.conftest import FakeClock
from tests.support.inbound import BOUNCE_ADDRESS, plain
from tests.support.smtp import SmtpTestServer
from tests.support.subscribers import add_subscriber
from tests.support.web import BASE_URL, harness, subscriber

PERSON = "grace@example.net"


@pytest.fixture
def ctx(app: AppContext, smtp_server: SmtpTestServer) -> Iterator[AppContext]:
    """The test database's context with a request address and the test SMTP server."""
    app.settings = replace(
        app.settings,
        bounce_address=BOUNCE_ADDRESS,
        smtp_port=smtp_server.port,
        from_address="Paper digest <digest@example.org>",
        base_url=BASE_URL,
    )
    yield app


def command(ctx: AppContext, body: str, sender: str = PERSON) -> str:
    to = request_address(ctx.settings)
    raw = plain(sender=sender, to=to, body=body)
    result = process_message(ctx, raw, rcpt_to=[to], mail_from=sender)
    assert result.kind == "command"
    return result.effect


def reply_text(smtp: SmtpTestServer) -> tuple[str, str]:
    sent = smtp.messages[-1]
    assert sent.envelope_from in ("", "<>") and sent.recipients == [PERSON]
    reply = message_from_bytes(sent.data, policy=policy.default)
    assert reply["Auto-Submitted"] == "auto-replied"
    return str(reply["Subject"]), reply.get_body(("plain",)).get_content()  # type: ignore[union-attr]


async def test_follow_by_mail_mails_a_link_that_follows_once_saved(
    ctx: AppContext, smtp_server: SmtpTestServer, clock: FakeClock
) -> None:
    with session_scope(ctx.engine) as s:
        prefs = Preferences(topics="world models", follows=["Percy Liang"])
        add_subscriber(s, PERSON, prefs, status="active", actor="t", now=ctx.now())
    assert command(ctx, "follow LeCun, Yann") == "follow: preferences link sent"
    subject, body = reply_text(smtp_server)
    link = re.search(r"https?://\S+", body)
    assert link and "/preferences/" in link.group(0)
    # The sender's words are never in the reply's text, only inside our link.
    assert "LeCun" not in subject and "LeCun" not in body.replace(link.group(0), "")
    assert subscriber(ctx, PERSON).follows == ["Percy Liang"]  # type: ignore[union-attr]

    url = urlsplit(link.group(0))
    async with harness(ctx, smtp_server) as web, web.client() as client:
        page = await client.get(f"{url.path}?{url.query}")
        assert page.status_code == 200
        assert "Press “Save preferences” to follow LeCun, Yann." in page.text
        assert ">Percy Liang\nLeCun, Yann</textarea>" in page.text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        form = {"csrf_token": token.group(1), "action": "save", "topics": "world models"}
        form["follows"] = "Percy Liang\nLeCun, Yann"
        headers = {"Origin": BASE_URL, "Sec-Fetch-Site": "same-origin"}
        saved = await client.post(url.path, data=form, headers=headers)
    assert saved.status_code == 200 and "preferences are saved" in saved.text
    assert subscriber(ctx, PERSON).follows == ["Percy Liang", "LeCun, Yann"]  # type: ignore[union-attr]

    clock.advance(hours=1)  # the hourly cap of replies to one address
    assert command(ctx, "unfollow Y. LeCun") == "unfollow: preferences link sent"
    _, body = reply_text(smtp_server)
    link = re.search(r"https?://\S+", body)
    assert link and link.group(0).endswith("?unfollow=Y.%20LeCun")
    async with harness(ctx, smtp_server) as web, web.client() as client:
        page = await client.get(link.group(0).removeprefix(BASE_URL))
    assert "to stop following Y. LeCun." in page.text
    assert ">Percy Liang</textarea>" in page.text


@pytest.mark.backend  # mail commands' reply caps on PostgreSQL
def test_follow_needs_a_name_and_a_subscription(
    ctx: AppContext, smtp_server: SmtpTestServer, clock: FakeClock
) -> None:
    with session_scope(ctx.engine) as s:
        add_subscriber(s, PERSON, Preferences(), status="active", actor="t", now=ctx.now())
    for body in ("follow", "follow https://spam.example/buy", "follow 1-800-CALL-NOW"):
        clock.advance(hours=1)  # the hourly cap of replies to one address
        assert command(ctx, body) == "follow: no author name, help sent"
        _, text = reply_text(smtp_server)
        assert "follow NAME" in text and "spam.example" not in text
    stranger = "stranger@example.net"
    assert command(ctx, "follow Yann LeCun", sender=stranger) == "follow: not subscribed, no reply"
    assert len(smtp_server.messages) == 3
