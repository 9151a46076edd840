"""Provider webhooks end to end (ASGI app, real database, SNS stood in for by a loopback HTTPS
server): each provider's documented payload, signed with test keys, is accepted and acted on
(the subscriber we mailed is bounced, the record is listed by `inbound list`); tampered,
stale, replayed and unsigned variants are 401 with nothing changed; a route is 404 until its
secret is set; a body over 1 MB is 413; an event without evidence is recorded, nothing more."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Inbound, Subscriber
from digestd.inbound.webhooks.ses import SnsVerifier
from tests.support import webhooks as wh
from tests.support.digests import add_subscriber, record_sent
from tests.support.smtp import SmtpTestServer
from tests.support.subscribers import json_of, make_invoke
from tests.support.web import WebHarness, harness

NOW = datetime(2026, 11, 26, 8, 40, tzinfo=UTC)
ADA, BOB = "ada@example.org", "bob@example.org"
OURS = "<digest.2026-11-26.1.a1b2c3@example.org>"
MAILGUN_KEY = "key-0123456789abcdef0123456789abcdef"
POSTMARK_AUTH = "digestd:postmark-password-0123"
SECRET = "whsec_" + base64.b64encode(b"standard-webhooks-test-secret-32b").decode()
SENDGRID_KEY, SENDGRID_PUBLIC = wh.sendgrid_keys()


@pytest.fixture
async def web(
    app: AppContext, smtp_server: SmtpTestServer, clock, tmp_path: Path
) -> AsyncIterator[WebHarness]:
    """Ada was sent a digest (Message-ID OURS); Bob subscribed but was never mailed."""
    clock.set(NOW)
    with session_scope(app.engine) as s:
        ada = add_subscriber(s, ADA, NOW - timedelta(days=9))
        add_subscriber(s, BOB, NOW - timedelta(days=9))
        delivery = record_sent(
            s, ada, [], period="2026-11-26", window_start=NOW - timedelta(days=1), window_end=NOW
        )
        delivery.message_id = OURS
        s.add(delivery)
    app.settings = replace(
        app.settings,
        ses_topic_arns=wh.TOPIC,
        sendgrid_public_key=SENDGRID_PUBLIC,
        postmark_auth=POSTMARK_AUTH,
        mailgun_signing_key=MAILGUN_KEY,
        webhook_secret=SECRET,
    )
    async with harness(app, smtp_server) as h:
        yield h


def state(app: AppContext) -> tuple[dict[str, str], int]:
    """Each subscriber's status, and how many inbound records there are."""
    with session_scope(app.engine) as s:
        statuses = {sub.email: sub.status for sub in s.exec(select(Subscriber))}
        return statuses, len(list(s.exec(select(Inbound))))


Post = Callable[..., Any]


async def check_refusals(web: WebHarness, app: AppContext, path: str, variants: dict) -> None:
    """Each variant (name -> (body, headers)) is 401 and changes nothing."""
    before = state(app)
    async with web.client() as client:
        for name, (body, headers) in variants.items():
            response = await client.post(path, content=body, headers=headers)
            assert response.status_code == 401, (name, response.text)
    assert state(app) == before


async def test_sendgrid(web: WebHarness, app: AppContext) -> None:
    ts = int(NOW.timestamp())
    body = json.dumps(wh.sendgrid_bounce(ADA, OURS, ts)).encode()
    headers = wh.sendgrid_headers(SENDGRID_KEY, body, ts)
    stale_ts = ts - 6 * 60
    await check_refusals(
        web,
        app,
        "/webhooks/sendgrid",
        {
            "unsigned": (body, {}),
            "tampered": (body.replace(b"5.1.1", b"5.1.2", 1), headers),
            "stale": (body, wh.sendgrid_headers(SENDGRID_KEY, body, stale_ts)),
            "other key": (body, wh.sendgrid_headers(wh.sendgrid_keys()[0], body, ts)),
        },
    )
    async with web.client() as client:
        accepted = await client.post("/webhooks/sendgrid", content=body, headers=headers)
        replayed = await client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert accepted.status_code == 200 and accepted.json()["recorded"] == 1
    assert replayed.status_code == 401
    statuses, count = state(app)
    assert statuses == {ADA: "bounced", BOB: "active"} and count == 1


async def test_mailgun(web: WebHarness, app: AppContext) -> None:
    ts = int(NOW.timestamp())
    body = wh.mailgun_body(MAILGUN_KEY, wh.mailgun_failed(ADA, OURS), ts, "token-1")
    await check_refusals(
        web,
        app,
        "/webhooks/mailgun",
        {
            # Mailgun signs timestamp + token, not the event (TLS protects the event): a
            # changed token or timestamp is what a signature check can see.
            "tampered token": (body.replace(b'"token-1"', b'"token-9"'), {}),
            "tampered timestamp": (body.replace(str(ts).encode(), str(ts - 1).encode(), 1), {}),
            "stale": (
                wh.mailgun_body(MAILGUN_KEY, wh.mailgun_failed(ADA, OURS), ts - 400, "t2"),
                {},
            ),
            "wrong key": (wh.mailgun_body("x" * 32, wh.mailgun_failed(ADA, OURS), ts, "t3"), {}),
            "unsigned": (json.dumps({"event-data": wh.mailgun_failed(ADA, OURS)}).encode(), {}),
        },
    )
    async with web.client() as client:
        accepted = await client.post("/webhooks/mailgun", content=body)
        replayed = await client.post("/webhooks/mailgun", content=body)
    assert accepted.status_code == 200 and replayed.status_code == 401
    assert state(app) == ({ADA: "bounced", BOB: "active"}, 1)


async def test_postmark(web: WebHarness, app: AppContext) -> None:
    body = json.dumps(wh.postmark_bounce(ADA, 42)).encode()

    def auth(value: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(value.encode()).decode()}

    await check_refusals(
        web,
        app,
        "/webhooks/postmark",
        {
            "no auth": (body, {}),
            "wrong password": (body, auth("digestd:postmark-password-0124")),
            "not basic": (body, {"Authorization": f"Bearer {POSTMARK_AUTH}"}),
        },
    )
    async with web.client() as client:
        accepted = await client.post(
            "/webhooks/postmark", content=body, headers=auth(POSTMARK_AUTH)
        )
        replayed = await client.post(
            "/webhooks/postmark", content=body, headers=auth(POSTMARK_AUTH)
        )
    assert accepted.status_code == 200 and replayed.status_code == 401
    assert state(app) == ({ADA: "bounced", BOB: "active"}, 1)


@pytest.mark.backend  # the replay guard (webhook_seen) on PostgreSQL
async def test_standard_webhooks(web: WebHarness, app: AppContext) -> None:
    ts = int(NOW.timestamp())
    body = json.dumps(wh.resend_bounced(ADA, OURS)).encode()
    headers = wh.standard_headers(SECRET, "msg_1", ts, body)
    other = "whsec_" + base64.b64encode(b"another-secret-of-32-bytes-long!").decode()
    await check_refusals(
        web,
        app,
        "/webhooks/standard",
        {
            "unsigned": (body, {"webhook-id": "msg_1", "webhook-timestamp": str(ts)}),
            "tampered": (body.replace(b"Permanent", b"Transient"), headers),
            "stale": (body, wh.standard_headers(SECRET, "msg_2", ts - 301, body)),
            "other secret": (body, wh.standard_headers(other, "msg_3", ts, body)),
        },
    )
    async with web.client() as client:
        accepted = await client.post("/webhooks/standard", content=body, headers=headers)
        replayed = await client.post("/webhooks/standard", content=body, headers=headers)
    assert accepted.status_code == 200 and replayed.status_code == 401
    assert state(app) == ({ADA: "bounced", BOB: "active"}, 1)


async def test_ses_through_sns(web: WebHarness, app: AppContext, tmp_path: Path) -> None:
    with wh.sns_stand_in(tmp_path / "sns") as sns:
        # Tests only: the loopback stand-in passes the host check (see ses.py's docstring).
        web.app.state.sns_verifier = SnsVerifier(
            (wh.TOPIC,),
            allowed_host=lambda host: host == "127.0.0.1",
            tls_context=sns.client_context,
        )
        bob = sns.sign(wh.sns_notification(wh.ses_bounce(BOB, "<x@elsewhere>"), NOW, "m-0"))
        ada = sns.sign(wh.sns_notification(wh.ses_bounce(ADA, OURS), NOW, "m-1"), "2")
        wrong_topic = sns.sign({**wh.sns_notification({}, NOW, "m-2"), "TopicArn": wh.TOPIC + "x"})
        stale = sns.sign(
            wh.sns_notification(wh.ses_bounce(ADA, OURS), NOW - timedelta(hours=2), "m-3")
        )
        tampered = {**ada, "Message": ada["Message"].replace("5.1.1", "4.2.2")}
        off_host = sns.sign(wh.sns_notification(wh.ses_bounce(ADA, OURS), NOW, "m-4"))
        off_host["SigningCertURL"] = "https://sns.evil.example/cert.pem"
        plain_http = {**ada, "SigningCertURL": sns.cert_url.replace("https://", "http://")}
        v3 = {**ada, "SignatureVersion": "3"}
        encode = lambda m: (json.dumps(m).encode(), {})  # noqa: E731
        await check_refusals(
            web,
            app,
            "/webhooks/ses",
            {
                "tampered": encode(tampered),
                "wrong topic": encode(wrong_topic),
                "stale": encode(stale),
                "certificate off SNS": encode(off_host),
                "certificate over http": encode(plain_http),
                "version 3": encode(v3),
                "unsigned": encode({k: v for k, v in ada.items() if k != "Signature"}),
            },
        )
        confirm = sns.sign(
            {
                "Type": "SubscriptionConfirmation",
                "MessageId": "c-1",
                "Token": "tok",
                "TopicArn": wh.TOPIC,
                "Message": "You have chosen to subscribe to the topic.",
                "SubscribeURL": f"{sns.base}/confirm?Token=tok",
                "Timestamp": NOW.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            }
        )
        evil = sns.sign({**confirm, "SubscribeURL": "https://evil.example/confirm"})
        async with web.client() as client:
            no_evidence = await client.post("/webhooks/ses", content=json.dumps(bob))
            accepted = await client.post("/webhooks/ses", content=json.dumps(ada))
            replayed = await client.post("/webhooks/ses", content=json.dumps(ada))
            confirmed = await client.post("/webhooks/ses", content=json.dumps(confirm))
            refused = await client.post("/webhooks/ses", content=json.dumps(evil))
        assert (no_evidence.status_code, accepted.status_code, replayed.status_code) == (
            200,
            200,
            401,
        )
        assert "nothing changed" in no_evidence.json()["effects"][0]
        assert confirmed.status_code == 200 and sns.confirmed == ["/confirm?Token=tok"]
        assert refused.status_code == 401 and len(sns.confirmed) == 1
    assert state(app) == ({ADA: "bounced", BOB: "active"}, 2)
    # Listed by `digestd inbound list`, with what each did.
    rows = json_of(make_invoke(app.settings.database_url)("inbound", "list", "--json"))
    assert [(r["kind"], r["source"], r["subscriber"]) for r in rows] == [
        ("bounce", "webhook:ses", ADA),
        ("bounce", "webhook:ses", None),
    ]


async def test_routes_are_off_until_their_secret_is_set_and_bodies_are_bounded(
    app: AppContext, smtp_server: SmtpTestServer, web: WebHarness
) -> None:
    async with web.client() as client:
        huge = await client.post("/webhooks/mailgun", content=b"[" + b"1," * 600_000 + b"1]")
    assert huge.status_code == 413
    off_settings = dict(ses_topic_arns=None, sendgrid_public_key=None, postmark_auth=None)
    off_settings |= dict(mailgun_signing_key=None, webhook_secret=None)
    app.settings = replace(web.ctx.settings, **off_settings)  # type: ignore[arg-type]
    async with harness(app, smtp_server) as off, off.client() as client:
        for provider in ("ses", "sendgrid", "postmark", "mailgun", "standard"):
            response = await client.post(f"/webhooks/{provider}", content=b"{}")
            assert response.status_code == 404, provider


async def test_a_soft_bounce_is_counted_not_bounced(web: WebHarness, app: AppContext) -> None:
    ts = int(NOW.timestamp())
    event = {**wh.mailgun_failed(ADA, OURS), "severity": "temporary"}
    event["delivery-status"] = {"code": 452, "message": "4.2.2 Mailbox full"}
    async with web.client() as client:
        response = await client.post(
            "/webhooks/mailgun", content=wh.mailgun_body(MAILGUN_KEY, event, ts, "soft-1")
        )
    assert response.status_code == 200
    assert response.json()["effects"][0].startswith("soft bounce counted")
    assert state(app) == ({ADA: "active", BOB: "active"}, 1)
