"""POST /subscribe over the ASGI app, real database (SQLite and PostgreSQL) and real SMTP."""

from __future__ import annotations

import re

import httpx
import pytest

from digestd.core.db import session_scope
from digestd.core.statuses import SubscriberStatus
from digestd.subscribers import lifecycle
from digestd.subscribers.signup import CONFIRMATION_SENT
from digestd.web.ratelimit import WebLimits
from tests.support.subscribers import change, get_by_email
from tests.support.web import (
    BASE_URL,
    WebHarness,
    events,
    harness,
    html_part,
    link_in,
    subscriber,
    text_part,
    web_fixture,  # noqa: F401  (the `web` fixture)
)

GOOD = {
    "email": "Ada@Example.org",
    "topics": "diffusion models",
    "categories": ["cs.CV", "cs.LG"],
    "frequency": "weekly",
    "send_hour": 7,
    "send_weekday": 2,
    "timezone": "Europe/Berlin",
}


async def subscribe_json(web: WebHarness, body: dict, ip: str = "198.51.100.7") -> httpx.Response:
    async with web.client(ip) as client:
        return await client.post("/subscribe", json=body)


async def subscribe_form(web: WebHarness, fields: dict, **headers: str) -> httpx.Response:
    async with web.client() as client:
        return await client.post("/subscribe", data=fields, headers=headers)


def _set_status(web: WebHarness, email: str, status: str) -> None:
    """Put a known subscriber in `status`, as an admin or one of their links would."""
    with session_scope(web.ctx.engine) as session:
        sub = get_by_email(session, email)
        assert sub is not None
        for step in lifecycle.set_by_admin(sub, SubscriberStatus(status), now=web.ctx.now()):
            change(session, sub, step, now=web.ctx.now())


async def test_json_signup_stores_pending_and_mails_a_signed_confirm_link(web: WebHarness) -> None:
    response = await subscribe_json(web, GOOD)
    assert response.status_code == 202
    assert response.json()["status"] == "accepted"

    sub = subscriber(web.ctx, "ada@example.org")
    assert sub is not None and sub.status == "pending"
    assert (sub.frequency, sub.send_hour, sub.send_weekday) == ("weekly", 7, 2)
    assert sub.timezone == "Europe/Berlin" and sub.categories == ["cs.CV", "cs.LG"]

    [mail] = web.smtp.messages
    assert mail.recipients == ["ada@example.org"]
    assert "Confirm your subscription" in mail.message["Subject"]
    url = link_in(mail, "confirm")
    assert url.startswith(f"{BASE_URL}/confirm/")
    html = html_part(mail)
    assert url in html and 'style="' in html  # CSS inlined for mail clients
    assert "<style>" not in html.split("@media")[0].split("</head>")[1]  # nothing left in body

    async with web.client() as client:
        shown = await client.get(url.removeprefix(BASE_URL))
        still = subscriber(web.ctx, "ada@example.org")
        assert still is not None and still.status == "pending"  # a GET alone confirms nothing
        page = await web.press_confirm(client, url)
    assert shown.status_code == 200 and "Confirm my subscription" in shown.text
    assert page.status_code == 200
    assert "Your subscription is confirmed" in page.text
    assert 'value="Europe/Berlin" selected' in page.text  # the preferences are shown
    confirmed = subscriber(web.ctx, "ada@example.org")
    assert confirmed is not None and confirmed.status == "active"
    assert confirmed.confirmed_at == web.ctx.now()


async def test_form_signup_from_our_page_shows_check_inbox(web: WebHarness) -> None:
    async with web.client() as client:
        page = await client.get("/")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert page.status_code == 200 and token
        fields = {
            "csrf_token": token.group(1),
            "email": "grace@example.org",
            "categories": ["cs.CL"],
            "other_categories": "q-bio.NC",
            "frequency": "daily",
            "send_hour": "18",
            "send_weekday": "0",
            "timezone": "Asia/Tokyo",
            "topics": "",
        }
        response = await client.post(
            "/subscribe", data=fields, headers={"Origin": BASE_URL, "Sec-Fetch-Site": "same-origin"}
        )
    assert response.status_code == 200
    assert "Check your inbox" in response.text
    sub = subscriber(web.ctx, "grace@example.org")
    assert sub is not None and sub.categories == ["cs.CL", "q-bio.NC"] and sub.send_hour == 18
    assert len(web.smtp.messages) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://sub.digest.test"},
    ],
)
async def test_cross_site_form_posts_are_refused(web: WebHarness, headers: dict) -> None:
    fields = {"csrf_token": web.form_token("subscribe"), "email": "victim@example.org"}
    response = await subscribe_form(web, fields, **headers)
    assert response.status_code == 403
    assert "another site" in response.text
    assert subscriber(web.ctx, "victim@example.org") is None
    assert web.smtp.messages == []


async def test_form_without_a_valid_token_is_refused_and_kept_for_a_retry(web: WebHarness) -> None:
    for token in ("", "forged", web.form_token("preferences")):
        response = await subscribe_form(web, {"csrf_token": token, "email": "ok@example.org"})
        assert response.status_code == 403
        assert "expired" in response.text
        assert 'value="ok@example.org"' in response.text  # what was typed is not lost
    assert subscriber(web.ctx, "ok@example.org") is None


async def test_every_bad_field_gets_its_own_message_in_json(web: WebHarness) -> None:
    body = {
        "email": "not-an-address",
        "send_hour": 25,
        "timezone": "Mars/Olympus",
        "frequency": "hourly",
        "categories": ["cs.CL", "no spaces"],
        "max_items": 0,
        "colour": "red",
    }
    response = await subscribe_json(web, body)
    assert response.status_code == 422
    fields = response.json()["fields"]
    assert set(fields) == {
        "email",
        "send_hour",
        "timezone",
        "frequency",
        "categories",
        "max_items",
        "colour",
    }
    assert "between 0 and 23" in fields["send_hour"]
    assert "Mars/Olympus" in fields["timezone"]
    assert all("\n" not in message for message in fields.values())
    assert response.json()["error"] in fields.values()
    assert events(web.ctx, "subscriber.added") == [] and web.smtp.messages == []


@pytest.mark.parametrize(
    ("body", "value"),
    [
        ({"email": ["a@example.org"]}, "email must be a string"),
        ({"email": "a@example.org", "send_hour": True}, "whole number"),
        ({"email": "a@example.org", "send_hour": 7.5}, "whole number"),
        ({"email": "a@example.org", "categories": [1, 2]}, "list of strings"),
        ({"email": "a@example.org", "topics": {"x": 1}}, "topics must be a string"),
    ],
)
async def test_wrong_json_types_are_422_with_a_clear_message(
    web: WebHarness, body: dict, value: str
) -> None:
    response = await subscribe_json(web, body)
    assert response.status_code == 422
    assert value in response.json()["error"]


async def test_broken_bodies_get_4xx_json_errors(web: WebHarness) -> None:
    async with web.client() as client:
        bad_json = await client.post(
            "/subscribe", content=b"{nope", headers={"Content-Type": "application/json"}
        )
        not_object = await client.post("/subscribe", json=["a@example.org"])
        not_utf8 = await client.post(
            "/subscribe", content=b"\xff\xfe", headers={"Content-Type": "application/json"}
        )
        xml = await client.post(
            "/subscribe", content=b"<a/>", headers={"Content-Type": "application/xml"}
        )
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["error"]
    assert not_object.status_code == 422 and "JSON object" in not_object.json()["error"]
    assert not_utf8.status_code == 400
    assert xml.status_code == 415


async def test_form_errors_are_shown_next_to_each_field_and_escaped(web: WebHarness) -> None:
    fields = {
        "csrf_token": web.form_token("subscribe"),
        "email": "<script>alert(1)</script>",
        "send_hour": "99",
        "topics": "<b>bold</b>",
        "timezone": "UTC",
    }
    response = await subscribe_form(web, fields)
    assert response.status_code == 422
    page = response.text
    assert 'id="email-error"' in page and 'id="send_hour-error"' in page
    assert 'aria-invalid="true"' in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    assert "<b>bold</b>" not in page


async def test_answers_do_not_reveal_whether_an_address_is_known(web: WebHarness) -> None:
    async def answer(email: str) -> tuple[int, str]:
        r = await subscribe_json(web, {**GOOD, "email": email})
        return r.status_code, r.text

    unknown = await answer("new@example.org")
    # known in every status: pending, active, suspended, unsubscribed, bounced
    await answer("pending@example.org")
    for email, status in (
        ("active@example.org", "active"),
        ("paused@example.org", "suspended"),
        ("gone@example.org", "unsubscribed"),
        ("bounced@example.org", "bounced"),
    ):
        await answer(email)
        _set_status(web, email, status)
    mailed = len(web.smtp.messages)
    for email in (
        "pending@example.org",
        "active@example.org",
        "paused@example.org",
        "gone@example.org",
        "bounced@example.org",
    ):
        assert await answer(email) == unknown
    # A bounced address gets no mail at all (not even a confirmation) until an admin lifts it.
    assert len(web.smtp.messages) == mailed + 4
    assert "bounced@example.org" not in {m.recipients[0] for m in web.smtp.messages[mailed:]}
    bounced = subscriber(web.ctx, "bounced@example.org")
    assert bounced is not None and bounced.status == "bounced"
    # Form answers are the same page for a known and an unknown address too.
    pages = set()
    for email in ("active@example.org", "someone-else@example.org"):
        r = await subscribe_form(web, {"csrf_token": web.form_token("subscribe"), "email": email})
        pages.add((r.status_code, re.sub(r'value="[^"]{40,}"', "", r.text)))
    assert len(pages) == 1


async def test_active_address_gets_a_manage_mail_not_a_new_subscriber(web: WebHarness) -> None:
    await subscribe_json(web, GOOD)
    _set_status(web, GOOD["email"], "active")
    response = await subscribe_json(web, {**GOOD, "frequency": "daily", "send_hour": 3})
    assert response.status_code == 202
    again = subscriber(web.ctx, GOOD["email"])
    assert again is not None and again.status == "active"
    assert (again.frequency, again.send_hour) == ("weekly", 7)  # nothing changed by a stranger
    assert len(events(web.ctx, "subscriber.added")) == 1
    manage = web.smtp.messages[-1]
    assert "already subscribed" in manage.message["Subject"]
    assert "/preferences/" in link_in(manage, "preferences")
    assert "/confirm/" not in text_part(manage)


async def test_resubscribing_after_unsubscribe_needs_confirmation_again(web: WebHarness) -> None:
    await subscribe_json(web, GOOD)
    _set_status(web, GOOD["email"], "unsubscribed")
    await subscribe_json(web, {**GOOD, "send_hour": 9})
    # Nothing changes until the link in the new mail is clicked from the mailbox.
    sub = subscriber(web.ctx, GOOD["email"])
    assert sub is not None and sub.status == "unsubscribed" and sub.send_hour == 7
    url = link_in(web.smtp.messages[-1], "confirm")
    async with web.client() as client:
        assert (await client.get(url.removeprefix(BASE_URL))).status_code == 200
        assert (await web.press_confirm(client, url)).status_code == 200
    after = subscriber(web.ctx, GOOD["email"])
    assert after is not None and after.status == "active" and after.send_hour == 9
    assert after.consent_given_by == "web" and after.stopped_by is None


async def test_a_second_sign_up_cannot_change_what_a_pending_person_confirms(
    web: WebHarness,
) -> None:
    """Issue 23: a stranger signing up a pending address again must not change the
    preferences or the name that the person's own confirmation link then confirms."""
    await subscribe_json(web, {**GOOD, "name": "Victim"})
    victims_link = link_in(web.smtp.messages[-1], "confirm")
    await subscribe_json(web, {**GOOD, "name": "Mallory", "topics": "spam", "send_hour": 3})
    strangers_link = link_in(web.smtp.messages[-1], "confirm")
    pending = subscriber(web.ctx, GOOD["email"])
    assert pending is not None and (pending.name, pending.send_hour) == ("Victim", 7)
    async with web.client() as client:
        assert (await web.press_confirm(client, victims_link)).status_code == 200
    confirmed = subscriber(web.ctx, GOOD["email"])
    assert confirmed is not None and confirmed.status == "active"
    assert (confirmed.name, confirmed.topics, confirmed.send_hour) == (
        "Victim",
        GOOD["topics"],
        7,
    )
    # The stranger's link went to the person's mailbox too: once active, it changes nothing.
    async with web.client() as client:
        assert (await web.press_confirm(client, strangers_link)).status_code == 200
    after = subscriber(web.ctx, GOOD["email"])
    assert after is not None and (after.name, after.send_hour) == ("Victim", 7)


async def test_an_address_gets_a_handful_of_mails_a_day_at_most(web: WebHarness, clock) -> None:
    first = await subscribe_json(web, GOOD)
    for _ in range(5):
        again = await subscribe_json(web, GOOD)
        assert (again.status_code, again.text) == (first.status_code, first.text)
    assert len(web.smtp.messages) == web.app.state.web.limits.mails_per_email_per_day == 3
    assert len(events(web.ctx, CONFIRMATION_SENT)) == 3
    clock.advance(hours=23)
    await subscribe_json(web, GOOD)
    assert len(web.smtp.messages) == 3
    clock.advance(hours=1, minutes=1)  # the first mail is now more than 24 h old
    await subscribe_json(web, GOOD)
    assert len(web.smtp.messages) == 4


async def test_per_email_limit_holds_across_app_instances(app, smtp_server) -> None:
    # Two app instances (as two processes or replicas would be) share only the database.
    async with harness(app, smtp_server) as one, harness(app, smtp_server) as two:
        for h in (one, two, one, two, one):
            await subscribe_json(h, GOOD)
    assert len(smtp_server.messages) == 3


async def test_one_client_is_rate_limited_others_are_not(app, smtp_server) -> None:
    limits = WebLimits(subscribe_per_client="3/minute", posts_per_client="100/minute")
    async with harness(app, smtp_server, limits) as h:
        codes = [
            (await subscribe_json(h, {**GOOD, "email": f"u{i}@example.org"})).status_code
            for i in range(4)
        ]
        assert codes == [202, 202, 202, 429]
        refused = await subscribe_json(h, {**GOOD, "email": "u9@example.org"})
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert "try again" in refused.json()["error"]
        other = await subscribe_json(h, {**GOOD, "email": "u9@example.org"}, ip="192.0.2.44")
        assert other.status_code == 202
    assert len(smtp_server.messages) == 4


async def test_smtp_failure_is_recorded_and_the_answer_stays_the_same(web: WebHarness) -> None:
    baseline = await subscribe_json(web, {**GOOD, "email": "fine@example.org"})
    web.smtp.set_fault(lambda rcpt, n: "550 5.1.1 no such user")
    refused = await subscribe_json(web, {**GOOD, "email": "bouncy@example.org"})
    assert (refused.status_code, refused.text) == (baseline.status_code, baseline.text)
    failed = events(web.ctx, "confirmation_failed")
    sub = subscriber(web.ctx, "bouncy@example.org")
    assert sub is not None and [e.subscriber_id for e in failed] == [sub.id]


async def test_addresses_the_relay_cannot_deliver_are_refused_with_one_line(
    web: WebHarness,
) -> None:
    """Issue 23: a non-ASCII local part (the relay lacks SMTPUTF8) or one over 64 octets was
    accepted, and then every digest failed. Refused at sign-up, with one message."""
    for email in ("josé@example.org", "a" * 65 + "@example.org", "é" * 33 + "@example.org"):
        response = await subscribe_json(web, {"email": email})
        assert response.status_code == 422, email
        assert "\n" not in response.json()["error"]
        assert subscriber(web.ctx, email.split("@")[0][:5] + "@example.org") is None
    name = await subscribe_json(web, {**GOOD, "name": "Ada\x00Lovelace"})
    assert name.status_code == 422 and "control characters" in name.json()["fields"]["name"]
    assert web.smtp.messages == []
