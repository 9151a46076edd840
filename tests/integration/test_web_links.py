"""Confirm, one-click unsubscribe and the preference center behind signed links."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from digestd.core.db import session_scope
from digestd.core.models import Subscriber
from digestd.subscribers import lifecycle
from digestd.subscribers.lifecycle import FORGOTTEN
from digestd.subscribers.preferences import Preferences
from tests.support.subscribers import add_subscriber, change, get_by_email
from tests.support.web import (
    BASE_URL,
    WebHarness,
    events,
    link_for,
    link_in,
    subscriber,
    text_part,
    web_fixture,  # noqa: F401  (the `web` fixture)
)

EMAIL = "lin@example.org"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def make(web: WebHarness, status: str = "active", email: str = EMAIL) -> Subscriber:
    with session_scope(web.ctx.engine) as session:
        prefs = Preferences(topics="graph neural networks", categories=["cs.LG"], send_hour=6)
        return add_subscriber(session, email, prefs, status=status, actor="test", now=web.ctx.now())


def status_of(web: WebHarness, email: str = EMAIL) -> str | None:
    sub = subscriber(web.ctx, email)
    return sub.status if sub else None


def form_headers() -> dict[str, str]:
    return {"Origin": BASE_URL, "Sec-Fetch-Site": "same-origin"}


async def test_one_click_post_unsubscribes_at_once_without_login_or_redirect(
    web: WebHarness,
) -> None:
    sub = make(web)
    path = link_for(web.ctx, "unsubscribe", sub)
    async with web.client() as client:
        # As a mail provider sends it (RFC 8058): no cookies, no Origin, another server.
        response = await client.post(path, data=ONE_CLICK)
        again = await client.post(path, data=ONE_CLICK)
    assert response.status_code == 200 and "You are unsubscribed" in response.text
    assert "location" not in response.headers
    assert status_of(web) == "unsubscribed"
    assert again.status_code == 200  # unsubscribing twice is fine
    [event] = [e for e in events(web.ctx, "subscriber.status") if e.detail["to"] == "unsubscribed"]
    assert event.detail["way"] == "one-click"


async def test_the_page_button_is_recorded_as_the_page_way(web: WebHarness) -> None:
    sub = make(web)
    path = link_for(web.ctx, "unsubscribe", sub)
    async with web.client() as client:
        page = await client.get(path)
        assert 'name="via" value="page"' in page.text
        response = await client.post(path, data={**ONE_CLICK, "via": "page"})
    assert response.status_code == 200 and status_of(web) == "unsubscribed"
    [event] = events(web.ctx, "subscriber.status")
    assert (event.detail["to"], event.detail["way"]) == ("unsubscribed", "page")


async def test_one_click_works_from_other_sites_and_as_multipart(web: WebHarness) -> None:
    sub = make(web)
    async with web.client() as client:
        response = await client.post(
            link_for(web.ctx, "unsubscribe", sub),
            files={"List-Unsubscribe": (None, "One-Click")},
            headers={"Origin": "https://mail.example", "Sec-Fetch-Site": "cross-site"},
        )
    assert response.status_code == 200
    assert status_of(web) == "unsubscribed"


@pytest.mark.parametrize("body", [{}, {"List-Unsubscribe": "yes"}, {"unsubscribe": "One-Click"}])
async def test_one_click_needs_the_rfc8058_body(web: WebHarness, body: dict) -> None:
    sub = make(web)
    async with web.client() as client:
        response = await client.post(link_for(web.ctx, "unsubscribe", sub), data=body)
    assert response.status_code == 400
    assert "List-Unsubscribe=One-Click" in response.text
    assert status_of(web) == "active"


async def test_unsubscribe_page_get_changes_nothing_and_its_button_posts_one_click(
    web: WebHarness,
) -> None:
    sub = make(web)
    path = link_for(web.ctx, "unsubscribe", sub)
    async with web.client() as client:
        for _ in range(3):  # a mail scanner following the link, several times
            page = await client.get(path)
            assert page.status_code == 200
    assert status_of(web) == "active"
    assert f'action="{path}"' in page.text
    assert 'name="List-Unsubscribe" value="One-Click"' in page.text


async def test_confirm_activates_only_pending_and_shows_preferences(web: WebHarness) -> None:
    sub = make(web, status="pending")
    path = link_for(web.ctx, "confirm", sub)
    async with web.client() as client:
        shown = await client.get(path)
        assert status_of(web) == "pending"  # the link's page alone confirms nothing
        first = await web.press_confirm(client, path)
        second = await web.press_confirm(client, path)
        again = await client.get(path)
    assert "Confirm my subscription" in shown.text and EMAIL in shown.text
    assert f'action="{path}"' in shown.text
    assert "Your subscription is confirmed" in first.text
    assert "already confirmed" in second.text
    assert 'value="graph neural networks"' in first.text
    assert "already subscribed" in again.text and "Confirm my subscription" not in again.text
    assert status_of(web) == "active"
    assert len([e for e in events(web.ctx, "subscriber.status") if e.detail["to"] == "active"]) == 1


async def test_the_confirm_button_needs_our_form(web: WebHarness) -> None:
    sub = make(web, status="pending")
    path = link_for(web.ctx, "confirm", sub)
    async with web.client() as client:
        no_token = await client.post(path, data={"csrf_token": ""}, headers=form_headers())
        cross_site = await client.post(
            path,
            data={"csrf_token": web.form_token("confirm")},
            headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        )
        other_form = await client.post(
            path, data={"csrf_token": web.form_token("vote")}, headers=form_headers()
        )
    assert no_token.status_code == 403 and "Confirm my subscription" in no_token.text
    assert cross_site.status_code == 403 and other_form.status_code == 403
    assert status_of(web) == "pending"


async def test_old_confirm_link_does_not_revive_an_unsubscribed_address(web: WebHarness) -> None:
    sub = make(web, status="unsubscribed")
    async with web.client() as client:
        response = await client.get(link_for(web.ctx, "confirm", sub))
        pressed = await web.press_confirm(client, link_for(web.ctx, "confirm", sub))
    assert response.status_code == pressed.status_code == 410
    assert "subscribe again" in response.text and "subscribe again" in pressed.text
    assert status_of(web) == "unsubscribed"


def tampered(path: str) -> str:
    head, token = path.rsplit("/", 1)
    middle = len(token) // 2
    flipped = "A" if token[middle] != "A" else "B"
    return f"{head}/{token[:middle]}{flipped}{token[middle + 1 :]}"


@pytest.mark.parametrize("purpose", ["confirm", "unsubscribe", "preferences"])
async def test_tampered_links_are_refused(web: WebHarness, purpose: str) -> None:
    sub = make(web, status="pending" if purpose == "confirm" else "active")
    path = tampered(link_for(web.ctx, purpose, sub))
    async with web.client() as client:
        got = await client.get(path)
        posted = await client.post(path, data=ONE_CLICK) if purpose == "unsubscribe" else got
    assert got.status_code == 400 and "not valid" in got.text
    assert posted.status_code == 400
    assert status_of(web) == ("pending" if purpose == "confirm" else "active")


async def test_wrong_purpose_links_are_refused(web: WebHarness) -> None:
    sub = make(web, status="pending")
    unsubscribe_token = link_for(web.ctx, "unsubscribe", sub).rsplit("/", 1)[1]
    preferences_token = link_for(web.ctx, "preferences", sub).rsplit("/", 1)[1]
    async with web.client() as client:
        confirm = await client.get(f"/confirm/{unsubscribe_token}")
        unsubscribe = await client.post(f"/unsubscribe/{preferences_token}", data=ONE_CLICK)
    assert confirm.status_code == 400 and unsubscribe.status_code == 400
    assert status_of(web) == "pending"


async def test_expired_links_are_refused(web: WebHarness, clock) -> None:
    sub = make(web, status="pending")
    confirm = link_for(web.ctx, "confirm", sub)
    unsubscribe = link_for(web.ctx, "unsubscribe", sub)
    # Links are signed at the real time; the app judges their age by its injected clock.
    clock.set(datetime.now(UTC) + timedelta(days=3, hours=1))
    async with web.client() as client:
        late = await client.get(confirm)
        still_fine = await client.get(unsubscribe)  # unsubscribe links live for a year
    assert late.status_code == 410 and "expired" in late.text
    assert still_fine.status_code == 200
    assert status_of(web) == "pending"
    clock.set(datetime.now(UTC) + timedelta(days=366))
    async with web.client() as client:
        assert (await client.post(unsubscribe, data=ONE_CLICK)).status_code == 410
    assert status_of(web) == "pending"


async def test_revoked_links_are_refused_and_new_ones_work(web: WebHarness) -> None:
    sub = make(web)
    old = link_for(web.ctx, "unsubscribe", sub)
    with session_scope(web.ctx.engine) as session:
        row = get_by_email(session, EMAIL)
        assert row is not None
        change(session, row, lifecycle.revoke_links(row), now=web.ctx.now())
    fresh = subscriber(web.ctx, EMAIL)
    assert fresh is not None
    async with web.client() as client:
        refused = await client.post(old, data=ONE_CLICK)
        assert refused.status_code == 410 and "withdrawn" in refused.text
        assert status_of(web) == "active"
        accepted = await client.post(link_for(web.ctx, "unsubscribe", fresh), data=ONE_CLICK)
    assert accepted.status_code == 200
    assert status_of(web) == "unsubscribed"


async def prefs_form(web: WebHarness, path: str) -> dict[str, str]:
    async with web.client() as client:
        page = await client.get(path)
    assert page.status_code == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    return {"csrf_token": token.group(1)}


@pytest.mark.backend  # the preference form's update on PostgreSQL
async def test_preferences_are_changed_through_the_form(web: WebHarness) -> None:
    sub = make(web)
    path = link_for(web.ctx, "preferences", sub)
    fields = {
        **await prefs_form(web, path),
        "action": "save",
        "topics": "speech recognition",
        "categories": ["cs.CL", "cs.AI"],
        "other_categories": "eess.AS",
        "frequency": "weekly",
        "send_hour": "21",
        "send_weekday": "4",
        "timezone": "America/New_York",
        "max_items": "5",
        "format": "text",
    }
    async with web.client() as client:
        response = await client.post(path, data=fields, headers=form_headers())
    assert response.status_code == 200 and "preferences are saved" in response.text
    after = subscriber(web.ctx, EMAIL)
    assert after is not None
    assert after.topics == "speech recognition"
    assert after.categories == ["cs.CL", "cs.AI", "eess.AS"]
    assert (after.frequency, after.send_hour, after.send_weekday) == ("weekly", 21, 4)
    assert (after.timezone, after.max_items, after.format) == ("America/New_York", 5, "text")
    [changed] = events(web.ctx, "subscriber.updated")
    assert changed.actor == "web" and "timezone" in changed.detail["changes"]


async def test_unticking_every_category_clears_them(web: WebHarness) -> None:
    sub = make(web)
    path = link_for(web.ctx, "preferences", sub)
    fields = {**await prefs_form(web, path), "action": "save", "other_categories": ""}
    async with web.client() as client:
        assert (await client.post(path, data=fields)).status_code == 200
    after = subscriber(web.ctx, EMAIL)
    assert after is not None and after.categories == []


async def test_bad_preferences_show_messages_and_change_nothing(web: WebHarness) -> None:
    sub = make(web)
    path = link_for(web.ctx, "preferences", sub)
    fields = {
        **await prefs_form(web, path),
        "action": "save",
        "send_hour": "24",
        "max_items": "1000",
        "timezone": "Nowhere/Land",
    }
    async with web.client() as client:
        response = await client.post(path, data=fields)
    assert response.status_code == 422
    for field in ("send_hour", "max_items", "timezone"):
        assert f'id="{field}-error"' in response.text
    after = subscriber(web.ctx, EMAIL)
    assert after is not None and (after.send_hour, after.max_items) == (6, 10)
    assert events(web.ctx, "subscriber.updated") == []


async def test_preferences_refuse_cross_site_and_tokenless_posts(web: WebHarness) -> None:
    sub = make(web)
    path = link_for(web.ctx, "preferences", sub)
    async with web.client() as client:
        cross = await client.post(
            path,
            data={**await prefs_form(web, path), "action": "pause"},
            headers={"Origin": "https://evil.example"},
        )
        tokenless = await client.post(path, data={"action": "pause"})
        as_json = await client.post(path, json={"action": "pause"})
    assert cross.status_code == 403 and tokenless.status_code == 403
    assert as_json.status_code == 415
    assert status_of(web) == "active"


async def test_pause_and_resume(web: WebHarness) -> None:
    sub = make(web)
    path = link_for(web.ctx, "preferences", sub)
    token = await prefs_form(web, path)
    async with web.client() as client:
        paused = await client.post(path, data={**token, "action": "pause"})
        assert paused.status_code == 200 and "paused" in paused.text
        assert status_of(web) == "suspended"
        resumed = await client.post(path, data={**token, "action": "resume"})
    assert resumed.status_code == 200 and "back on" in resumed.text
    assert status_of(web) == "active"


async def test_a_pending_subscriber_cannot_pause(web: WebHarness) -> None:
    sub = make(web, status="pending")
    path = link_for(web.ctx, "preferences", sub)
    async with web.client() as client:
        response = await client.post(path, data={**await prefs_form(web, path), "action": "pause"})
    assert response.status_code == 409 and "confirm your address first" in response.text
    assert status_of(web) == "pending"


async def test_delete_my_data_needs_the_box_then_forgets_everything(web: WebHarness) -> None:
    sub = make(web)
    path = link_for(web.ctx, "preferences", sub)
    token = await prefs_form(web, path)
    async with web.client() as client:
        unticked = await client.post(path, data={**token, "action": "forget"})
        assert unticked.status_code == 422 and 'id="confirm_forget-error"' in unticked.text
        assert status_of(web) == "active"
        gone = await client.post(path, data={**token, "action": "forget", "confirm_forget": "yes"})
        assert gone.status_code == 200 and "Your data was deleted" in gone.text
        assert subscriber(web.ctx, EMAIL) is None
        [note] = events(web.ctx, FORGOTTEN)
        assert note.subscriber_id is None and EMAIL not in str(note.detail)
        # Every link of the forgotten subscriber now leads nowhere.
        later = await client.get(path)
    assert later.status_code == 410


async def test_garbage_tokens_and_unknown_pages_are_clear_4xx(web: WebHarness) -> None:
    async with web.client() as client:
        long = await client.get("/confirm/" + "x" * 5000)
        weird = await client.get("/preferences/%00%ff")
        missing = await client.get("/nothing-here")
        wrong_method = await client.delete("/subscribe")
        api_missing = await client.get("/nothing", headers={"Accept": "application/json"})
    assert long.status_code == 400 and weird.status_code == 400
    assert missing.status_code == 404 and "no page at this address" in missing.text
    assert wrong_method.status_code == 405
    assert api_missing.json() == {"error": "There is no page at this address."}


@pytest.mark.backend  # the link's event lookup on PostgreSQL
async def test_after_unsubscribe_and_signing_up_again_old_links_cannot_act(
    web: WebHarness,
) -> None:
    """Issue 23: an unsubscribe followed by a re-subscribe left the old links valid, so a
    forwarded old digest could unsubscribe the person again. The unsubscribe withdraws them;
    repeating it meanwhile still answers "unsubscribed"."""
    sub = make(web)
    old = link_for(web.ctx, "unsubscribe", sub)
    old_prefs = link_for(web.ctx, "preferences", sub)
    async with web.client() as client:
        assert (await client.post(old, data=ONE_CLICK)).status_code == 200
        again = await client.post(old, data=ONE_CLICK)
        assert again.status_code == 200 and "unsubscribed" in again.text  # RFC 8058: success
        assert (await client.get(old_prefs)).status_code == 410  # withdrawn at once
        signed = await client.post("/subscribe", json={"email": EMAIL, "topics": "graphs"})
        assert signed.status_code == 202
        confirm = next(m for m in reversed(web.smtp.messages) if "/confirm/" in text_part(m))
        url = link_in(confirm, "confirm").removeprefix(BASE_URL)
        assert (await web.press_confirm(client, url)).status_code == 200
        assert status_of(web) == "active"
        forwarded = await client.post(old, data=ONE_CLICK)
    assert forwarded.status_code == 410
    assert status_of(web) == "active"
