"""Issue 22: an old link can never act on a different person. Forget the newest subscriber,
sign up another, and every old link (preferences, unsubscribe page and one-click POST, view
in browser, vote page and vote POST, confirm) answers 410 and changes nothing: ids are never
given out twice, and even a row that held the same id (a database from before) is refused
by the link key. On SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlmodel import func, select

from digestd.core import tokens
from digestd.core.db import session_scope
from digestd.core.models import Delivery, Entry, Event, Subscriber, Vote
from digestd.core.statuses import ConsentVia, SubscriberStatus
from digestd.subscribers import lifecycle, manage, store
from digestd.subscribers.lifecycle import Consent
from digestd.subscribers.preferences import Preferences
from tests.support.subscribers import add_subscriber
from tests.support.web import (
    BASE_URL,
    WebHarness,
    link_in,
    subscriber,
    web_fixture,  # noqa: F401  (the `web` fixture)
)

PERIOD = "2026-11-26"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def _path(url: str) -> str:
    return url.removeprefix(BASE_URL)


def _with_digest(web: WebHarness, sub: Subscriber, entry_id: int) -> None:
    now = web.ctx.now()
    with session_scope(web.ctx.engine) as s:
        s.add(
            Delivery(
                subscriber_id=sub.id,  # type: ignore[arg-type]
                period=PERIOD,
                status="sent",
                message_id=f"<{sub.id}.{sub.link_key}@example.org>",
                created_at=now,
                sent_at=now,
                window_start=now - timedelta(days=1),
                window_end=now,
                entry_ids=str(entry_id),
                entry_count=1,
            )
        )


def _old_links(web: WebHarness, sub: Subscriber, entry_id: int) -> dict[str, tuple[str, str]]:
    """Every kind of link a mail to `sub` carried: name -> (method, path)."""
    key, base = web.ctx.secret_key, BASE_URL
    assert sub.id is not None
    view = tokens.view_url(tokens.subscriber_link(base, key, "view", sub), PERIOD)
    vote = tokens.vote_link(base, key, sub.id, sub.link_key, entry_id, "up")
    confirm = _path(tokens.subscriber_link(base, key, "confirm", sub))
    return {
        "preferences page": ("GET", _path(tokens.subscriber_link(base, key, "preferences", sub))),
        "unsubscribe page": ("GET", _path(tokens.subscriber_link(base, key, "unsubscribe", sub))),
        "one-click unsubscribe": (
            "POST",
            _path(tokens.subscriber_link(base, key, "unsubscribe", sub)),
        ),
        "confirm page": ("GET", confirm),
        "confirm button": ("POST-CONFIRM", confirm),
        "view in browser": ("GET", _path(view)),
        "vote page": ("GET", _path(vote)),
        "vote POST": ("POST-JSON", _path(vote)),
    }


async def _answers(web: WebHarness, links: dict[str, tuple[str, str]]) -> dict[str, int]:
    out: dict[str, int] = {}
    async with web.client() as client:
        for name, (method, path) in links.items():
            response: httpx.Response
            if method == "GET":
                response = await client.get(path)
            elif method == "POST":
                response = await client.post(path, data=ONE_CLICK)
            elif method == "POST-CONFIRM":
                response = await web.press_confirm(client, path)
            else:
                response = await client.post(
                    path, content=b"{}", headers={"Content-Type": "application/json"}
                )
            out[name] = response.status_code
    return out


def _snapshot(web: WebHarness, email: str) -> tuple[object, ...]:
    """Everything a link could change about a subscriber."""
    with session_scope(web.ctx.engine) as s:
        sub = s.exec(select(Subscriber).where(Subscriber.email == email)).one()
        events = s.exec(
            select(func.count()).select_from(Event).where(Event.subscriber_id == sub.id)
        ).one()
        votes = s.exec(
            select(func.count()).select_from(Vote).where(Vote.subscriber_id == sub.id)
        ).one()
        return (sub.status, sub.topics, sub.send_hour, sub.link_key, events, votes)


async def test_a_forgotten_subscribers_links_answer_410_whoever_holds_the_id(
    web: WebHarness,
) -> None:
    now = web.ctx.now()
    with session_scope(web.ctx.engine) as s:
        entry = Entry(
            canonical_key="arxiv:2310.06825",
            title="Mistral 7B",
            url="https://arxiv.org/abs/2310.06825",
            published_at=now,
            ingested_at=now,
        )
        s.add(entry)
        s.flush()
        first = add_subscriber(s, "first@example.org", Preferences(topics="llm"), now=now)
        entry_id = entry.id
    assert entry_id is not None and first.id is not None
    _with_digest(web, first, entry_id)
    links = _old_links(web, first, entry_id)
    # While the person is there, each link works (the confirm link just shows the page).
    working = await _answers(web, {k: v for k, v in links.items() if "unsubscribe" not in k})
    assert set(working.values()) == {200}, working
    manage.forget(web.ctx, manage.ByEmail("first@example.org"))

    # The next sign-up, through the form, confirmed by the person.
    async with web.client() as client:
        signed = await client.post("/subscribe", json={"email": "second@example.org"})
        assert signed.status_code == 202
        confirm = link_in(web.smtp.messages[-1], "confirm")
        assert (await web.press_confirm(client, _path(confirm))).status_code == 200
    second = subscriber(web.ctx, "second@example.org")
    assert second is not None and second.status == "active"
    assert second.id != first.id  # an id is never given out twice
    _with_digest(web, second, entry_id)
    before = _snapshot(web, "second@example.org")
    answers = await _answers(web, links)
    assert answers == dict.fromkeys(links, 410), answers
    assert _snapshot(web, "second@example.org") == before

    # A row holding the forgotten id itself (a database from before ids were kept): the link
    # key still tells the people apart.
    with session_scope(web.ctx.engine) as s:
        consent = Consent(now, ConsentVia.ADMIN, "test")
        third, added = lifecycle.new_subscriber(
            "third@example.org",
            Preferences(topics="diffusion"),
            status=SubscriberStatus.ACTIVE,
            now=now,
            consent=consent,
        )
        third.id = first.id
        store.add(s, third, added, actor="test", now=now)
    _with_digest(web, third, entry_id)
    before = _snapshot(web, "third@example.org")
    answers = await _answers(web, links)
    assert answers == dict.fromkeys(links, 410), answers
    assert _snapshot(web, "third@example.org") == before
