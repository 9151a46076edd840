""" "View in browser": a real digest sent over SMTP carries a signed link (both parts) to a page
with the digest's papers and reasons, without the subscriber's address or personal links.
On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import func, select

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Delivery, Event, Subscriber
from digestd.delivery.deliveries import carried_papers
from digestd.delivery.planning import plan_due
from digestd.delivery.sending import send_due
from digestd.subscribers import lifecycle, manage
from tests.support.digests import KENJI, add_subscriber, load_seed_entries
from tests.support.smtp import SmtpTestServer
from tests.support.subscribers import change
from tests.support.web import BASE_URL, harness, html_part, text_part

NOW = datetime(2026, 11, 26, 8, 30, tzinfo=UTC)
VIEW_RE = re.compile(r"View in your browser: (\S+)")


@pytest.fixture
async def sent(app: AppContext, smtp_server: SmtpTestServer, clock: Any) -> dict[str, Any]:
    """Two digests sent for real (one with topics, one trending), to the test SMTP server."""
    clock.set(NOW)
    app.settings = Settings(
        **{**app.settings.__dict__, "smtp_port": smtp_server.port, "base_url": BASE_URL}
    )
    joined = NOW - timedelta(days=10)
    with session_scope(app.engine) as s:
        load_seed_entries(s, NOW - timedelta(hours=2))
        add_subscriber(s, "kenji@example.org", joined, send_hour=8, **KENJI)
        add_subscriber(s, "tess@example.org", joined, send_hour=8, max_items=4)
    assert (await asyncio.to_thread(plan_due, app)).planned == 2
    report = await send_due(app, worker_id="test")
    assert report.sent == 2, report
    return {m.recipients[0]: m for m in smtp_server.messages}


def delivered_titles(app: AppContext, email: str) -> list[str]:
    with session_scope(app.engine) as s:
        ids = s.exec(
            select(Delivery.id)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)  # type: ignore[arg-type]
            .where(Subscriber.email == email)
            .order_by(Delivery.id)
        ).all()
        return [p.title for d in ids for p in carried_papers(s, d)]  # type: ignore[arg-type]


def counts(app: AppContext) -> tuple[int, ...]:
    with session_scope(app.engine) as s:
        return tuple(
            s.exec(select(func.count()).select_from(t)).one() for t in (Event, Delivery, Subscriber)
        )


async def test_view_in_browser_shows_the_digest_without_the_address(
    app: AppContext, smtp_server: SmtpTestServer, sent: dict[str, Any]
) -> None:
    mail = sent["kenji@example.org"]
    text, html = text_part(mail), html_part(mail)
    [url] = VIEW_RE.findall(text)
    assert url.startswith(f"{BASE_URL}/view/") and url.endswith("/2026-11-26")
    assert re.search(rf'href="{re.escape(url)}"[^>]*>View in browser</a>', html)
    titles = delivered_titles(app, "kenji@example.org")
    assert len(titles) == 3
    before = counts(app)
    async with harness(app, smtp_server) as web, web.client() as client:
        page = await client.get(url.removeprefix(BASE_URL))
        again = await client.get(url.removeprefix(BASE_URL))
    assert page.status_code == again.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    body = page.text
    shown = [t.strip() for t in re.findall(r'<h3 class="paper-title"><a [^>]*>(.*?)</a>', body)]
    assert shown == titles  # the digest's papers, in its order
    # The reasons the mail gave, word for word.
    mail_reasons = re.findall(r"Why: (.+)", text)
    page_reasons = re.findall(r'<p class="why">Why: (.*?)</p>', body)
    assert page_reasons == [r.strip() for r in mail_reasons]
    assert all(r.startswith("matches: ") for r in page_reasons)
    assert "Thu 26 Nov 2026" in body and "3 papers picked for you" in body
    for personal in ("kenji", "/unsubscribe/", "/preferences/", "/view/"):
        assert personal not in body, personal
    assert counts(app) == before  # a GET changes nothing


async def test_the_page_shows_the_reasons_the_mail_gave_after_the_topics_changed(
    app: AppContext, smtp_server: SmtpTestServer, sent: dict[str, Any]
) -> None:
    """The reasons are stored with the delivery when it is sent: a subscriber who changes
    their topics afterwards still sees, for that digest, what the mail said."""
    text = text_part(sent["kenji@example.org"])
    [url] = VIEW_RE.findall(text)
    mail_reasons = [r.strip() for r in re.findall(r"Why: (.+)", text)]
    assert all(r.startswith("matches: ") for r in mail_reasons)
    with session_scope(app.engine) as s:
        kenji = s.exec(select(Subscriber).where(Subscriber.email == "kenji@example.org")).one()
        kenji.topics = "quantum chromodynamics"
        s.add(kenji)
    async with harness(app, smtp_server) as web, web.client() as client:
        body = (await client.get(url.removeprefix(BASE_URL))).text
    assert re.findall(r'<p class="why">Why: (.*?)</p>', body) == mail_reasons


@pytest.mark.backend  # the web view's reads on PostgreSQL
async def test_trending_digest_view_and_the_text_only_link(
    app: AppContext, smtp_server: SmtpTestServer, sent: dict[str, Any]
) -> None:
    [url] = VIEW_RE.findall(text_part(sent["tess@example.org"]))
    async with harness(app, smtp_server) as web, web.client() as client:
        body = (await client.get(url.removeprefix(BASE_URL))).text
    assert re.findall(r'<p class="why">Why: (.*?)</p>', body)[0] == "trending · 132 upvotes"
    assert "tess@" not in body


async def test_tampered_other_period_revoked_and_forgotten_links_are_refused(
    app: AppContext, smtp_server: SmtpTestServer, sent: dict[str, Any]
) -> None:
    [url] = VIEW_RE.findall(text_part(sent["kenji@example.org"]))
    path = url.removeprefix(BASE_URL)
    token = path.split("/")[2]
    tampered = path.replace(token, token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    [other] = VIEW_RE.findall(text_part(sent["tess@example.org"]))
    other_token = other.removeprefix(BASE_URL).split("/")[2]
    async with harness(app, smtp_server) as web, web.client() as client:
        assert (await client.get(tampered)).status_code == 400
        assert (await client.get(path.replace("2026-11-26", "2026-11-25"))).status_code == 404
        assert (await client.get(path.replace("2026-11-26", "x' OR 1=1"))).status_code == 404
        # Another purpose's token (a preferences link) does not open the page.
        prefs = re.search(r"/preferences/(\S+)", text_part(sent["kenji@example.org"]))
        assert prefs is not None
        assert (await client.get(f"/view/{prefs.group(1)}/2026-11-26")).status_code == 400
        assert (await client.get(f"/view/{other_token}/2026-11-26")).status_code == 200

        with session_scope(app.engine) as s:
            tess = s.exec(select(Subscriber).where(Subscriber.email == "tess@example.org")).one()
            change(s, tess, lifecycle.revoke_links(tess), now=app.now())
        revoked = await client.get(f"/view/{other_token}/2026-11-26")
        assert revoked.status_code == 410

        manage.forget(app, manage.ByEmail("kenji@example.org"))
        gone = await client.get(path)
        assert gone.status_code == 410
        assert "kenji" not in gone.text
