"""Votes through the real web app: the links a sent digest carries, GET, POST, undo, refusals."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlmodel import select

from digestd.core import tokens
from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Subscriber, Vote
from digestd.delivery.planning import plan_due
from digestd.delivery.sending import send_due
from digestd.subscribers import lifecycle
from tests.support.digests import KENJI, add_subscriber, load_seed_entries
from tests.support.smtp import SmtpTestServer
from tests.support.subscribers import change
from tests.support.web import (
    BASE_URL,
    URL_RE,
    WebHarness,
    html_part,
    running_web,
    text_part,
    web_fixture,  # noqa: F401  (the `web` fixture)
)

NOW = datetime(2026, 11, 26, 8, 30, tzinfo=UTC)
JSON = {"Content-Type": "application/json"}
VOTE_PATH = re.compile(r"/vote/([^/]+)/(\d+)/(up|down)/([0-9a-f]+)$")


def all_votes(ctx: AppContext) -> list[tuple[int, int, int]]:
    with session_scope(ctx.engine) as s:
        return [(v.subscriber_id, v.entry_id, v.value) for v in s.exec(select(Vote))]


def seed(app: AppContext, *emails: str) -> list[int]:
    with session_scope(app.engine) as s:
        load_seed_entries(s, NOW - timedelta(hours=2))
        return [
            add_subscriber(s, e, NOW - timedelta(days=10), send_hour=8, **KENJI).id  # type: ignore[misc]
            for e in emails
        ]


def vote_path(
    ctx: AppContext, sub_id: int, entry_id: int, direction: str, key: str | None = None
) -> str:
    if key is None:
        with session_scope(ctx.engine) as s:
            row = s.get(Subscriber, sub_id)
            key = row.link_key if row is not None else "none"
    url = tokens.vote_link(BASE_URL, ctx.secret_key, sub_id, key, entry_id, direction)
    return url.removeprefix(BASE_URL)


async def test_a_sent_digest_votes_once_through_the_real_server_and_get_records_nothing(
    app: AppContext, smtp_server: SmtpTestServer, clock
) -> None:
    clock.set(NOW)
    app.settings = Settings(**{**app.settings.__dict__, "smtp_port": smtp_server.port})
    [sub_id] = seed(app, "kenji@example.org")
    await asyncio.to_thread(plan_due, app)
    report = await send_due(app, worker_id="test")
    assert report.sent == 1
    [received] = smtp_server.messages
    text, html = text_part(received), html_part(received)
    urls = [u for u in URL_RE.findall(text) if "/vote/" in u]
    # Two links per paper, in the text part and the HTML part alike.
    assert len(urls) == 2 * KENJI["max_items"]
    assert text.count("More like this: ") == text.count("Less like this: ") == 3
    assert all(u.replace("&", "&amp;") in html for u in urls)
    more = next(u for u in urls if "/up/" in u)
    path = more[more.index("/vote/") :]
    match = VOTE_PATH.search(path)
    assert match is not None
    entry_id = int(match.group(2))

    with running_web(app, smtp_server) as web:
        async with httpx.AsyncClient(base_url=web.base_url) as client:
            page = await client.get(path)
            assert page.status_code == 200
            assert "More like this" in page.text and "Yes, more like this" in page.text
            assert all_votes(app) == []  # a GET (a mail scanner) records nothing
            first = await client.post(path, content=b"{}", headers=JSON)
            second = await client.post(path, content=b"{}", headers=JSON)
    assert first.status_code == 200 and first.json()["changed"] is True
    assert first.json()["vote"] == "up" and first.json()["entry_id"] == entry_id
    assert second.status_code == 200 and second.json()["changed"] is False
    assert all_votes(app) == [(sub_id, entry_id, 1)]


async def test_tampered_expired_revoked_and_other_subscribers_links_are_refused(
    web: WebHarness, clock
) -> None:
    clock.set(NOW)
    ada, bob = seed(web.ctx, "ada@example.org", "bob@example.org")
    good = vote_path(web.ctx, ada, 10, "up")
    token, _entry, _direction, mac = VOTE_PATH.search(good).groups()  # type: ignore[union-attr]
    bobs = vote_path(web.ctx, bob, 10, "up")
    bob_token = VOTE_PATH.search(bobs).group(1)  # type: ignore[union-attr]
    tampered = [
        f"/vote/{token}/11/up/{mac}",  # another paper
        f"/vote/{token}/10/down/{mac}",  # the other vote
        f"/vote/{bob_token}/10/up/{mac}",  # another subscriber's token with this MAC
        f"/vote/{token}/10/up/{mac[:-1]}{'0' if mac[-1] != '0' else '1'}",  # a changed MAC
        f"/vote/{token[:-2]}xx/10/up/{mac}",  # a changed token
        f"/vote/{token}/10/sideways/{mac}",
    ]
    async with web.client() as client:
        for path in tampered:
            got = await client.post(path, content=b"{}", headers=JSON)
            assert got.status_code == 400, path
            assert "not valid" in got.json()["error"]
            page = await client.get(path)
            assert page.status_code == 400, path
        assert all_votes(web.ctx) == []
        # Bob's own link votes for Bob only.
        assert (await client.post(bobs, content=b"{}", headers=JSON)).status_code == 200
        assert all_votes(web.ctx) == [(bob, 10, 1)]

        # Links are signed at the real time; the app judges their age by its injected clock.
        clock.set(datetime.now(UTC) + timedelta(seconds=tokens.PURPOSES["vote"] + 3600))
        late = await client.post(good, content=b"{}", headers=JSON)
        assert late.status_code == 410 and "expired" in late.json()["error"]
        clock.set(NOW)
        with session_scope(web.ctx.engine) as s:
            row = s.get(Subscriber, ada)
            assert row is not None
            change(s, row, lifecycle.revoke_links(row), now=NOW)
            key = row.link_key
        revoked = await client.post(good, content=b"{}", headers=JSON)
        assert revoked.status_code == 410 and "withdrawn" in revoked.json()["error"]
        fresh = vote_path(web.ctx, ada, 10, "down", key=key)
        assert (await client.post(fresh, content=b"{}", headers=JSON)).status_code == 200
    assert sorted(all_votes(web.ctx)) == [(ada, 10, -1), (bob, 10, 1)]


@pytest.mark.parametrize("body", [b"[]", b"not json", b'{"action": "explode"}'])
async def test_json_vote_needs_an_object(web: WebHarness, clock, body: bytes) -> None:
    clock.set(NOW)
    [ada] = seed(web.ctx, "ada@example.org")
    async with web.client() as client:
        got = await client.post(vote_path(web.ctx, ada, 5, "down"), content=body, headers=JSON)
    assert got.status_code == 400
    assert all_votes(web.ctx) == []


@pytest.mark.backend  # the vote store on PostgreSQL
async def test_form_button_needs_same_site_and_form_token_then_undo(web: WebHarness, clock) -> None:
    clock.set(NOW)
    [ada] = seed(web.ctx, "ada@example.org")
    path = vote_path(web.ctx, ada, 5, "down")
    same_site = {"Origin": BASE_URL, "Sec-Fetch-Site": "same-origin"}
    async with web.client() as client:
        cross = await client.post(
            path,
            data={"action": "vote", "csrf_token": web.form_token("vote")},
            headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        )
        assert cross.status_code == 403
        no_token = await client.post(path, data={"action": "vote"}, headers=same_site)
        assert no_token.status_code == 403
        assert all_votes(web.ctx) == []
        voted = await client.post(
            path, data={"action": "vote", "csrf_token": web.form_token("vote")}, headers=same_site
        )
        assert voted.status_code == 200 and "fewer papers like this one" in voted.text
        assert "Undo my vote" in voted.text
        assert all_votes(web.ctx) == [(ada, 5, -1)]
        undone = await client.post(
            path, data={"action": "undo", "csrf_token": web.form_token("vote")}, headers=same_site
        )
        assert undone.status_code == 200 and "taken back" in undone.text
    assert all_votes(web.ctx) == []


@pytest.mark.backend  # the vote store on PostgreSQL
async def test_preference_centre_lists_votes_and_clears_them(web: WebHarness, clock) -> None:
    from tests.support.web import link_for

    clock.set(NOW)
    [ada] = seed(web.ctx, "ada@example.org")
    async with web.client() as client:
        for entry_id, direction in ((10, "up"), (25, "up"), (5, "down")):
            path = vote_path(web.ctx, ada, entry_id, direction)
            assert (await client.post(path, json={})).status_code == 200
        with session_scope(web.ctx.engine) as s:
            sub = s.get(Subscriber, ada)
            prefs = link_for(web.ctx, "preferences", sub)  # type: ignore[arg-type]
        page = await client.get(prefs)
        assert "Your votes" in page.text and "DuoAttention" in page.text
        assert page.text.count("More like this</span>") == 2
        assert page.text.count("Less like this</span>") == 1
        cleared = await client.post(
            prefs,
            data={"action": "clear_votes", "csrf_token": web.form_token("preferences")},
            headers={"Origin": BASE_URL, "Sec-Fetch-Site": "same-origin"},
        )
    assert cleared.status_code == 200 and "Cleared 3 votes" in cleared.text
    assert all_votes(web.ctx) == []
