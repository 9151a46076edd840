"""A real browser follows "More like this" from a sent digest: the page, the button, undo,
and the preference centre's list of votes, "clear all" and "papers I like".
Screenshots go to test-artifacts/web/."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Vote
from digestd.delivery.planning import plan_due
from digestd.delivery.sending import send_due
from tests.support.browser import ARTIFACTS as BROWSER_ARTIFACTS
from tests.support.digests import KENJI, add_subscriber, load_seed_entries
from tests.support.smtp import SmtpTestServer
from tests.support.web import URL_RE, html_part, link_in, running_web

pytestmark = pytest.mark.browser

ARTIFACTS = BROWSER_ARTIFACTS / "web"
NOW = datetime(2026, 11, 26, 8, 30, tzinfo=UTC)


@pytest.fixture
def browser(shared_browser: Any) -> Any:
    return shared_browser


def votes_in(app: AppContext) -> list[tuple[int, int, bool]]:
    with session_scope(app.engine) as s:
        return [(v.entry_id, v.value, v.interest) for v in s.exec(select(Vote))]


def test_vote_page_button_undo_and_preference_centre_in_a_browser(
    browser: Any, app: AppContext, smtp_server: SmtpTestServer, clock
) -> None:
    clock.set(NOW)
    app.settings = Settings(**{**app.settings.__dict__, "smtp_port": smtp_server.port})
    with session_scope(app.engine) as s:
        load_seed_entries(s, NOW - timedelta(hours=2))
        add_subscriber(s, "kenji@example.org", NOW - timedelta(days=10), send_hour=8, **KENJI)
    plan_due(app)
    # In a thread of its own: Playwright's sync API keeps an event loop in this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, send_due(app, worker_id="test")).result(timeout=60)
    [mail] = smtp_server.messages
    more = next(u for u in URL_RE.findall(html_part(mail)) if "/vote/" in u and "/up/" in u)
    vote_path = more[more.index("/vote/") :]
    entry_id = int(vote_path.split("/")[3])
    prefs_path = link_in(mail, "preferences")
    prefs_path = prefs_path[prefs_path.index("/preferences/") :]

    with running_web(app, smtp_server) as web:
        context = browser.new_context(locale="en-US", viewport={"width": 800, "height": 900})
        context.set_default_timeout(10_000)
        page = context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(str(exc)))

        page.goto(web.base_url + vote_path)
        assert page.get_by_role("heading", name="More like this").is_visible()
        assert "Attention" in page.locator(".paper-title").inner_text()
        # The lone title has no rank: no stray "0." before it.
        before = page.locator(".paper-title").evaluate(
            "el => getComputedStyle(el, '::before').content"
        )
        assert before in ("none", "normal"), before
        assert votes_in(app) == []  # opening the link records nothing
        page.screenshot(path=str(ARTIFACTS / "vote-page.png"), full_page=True)

        page.get_by_role("button", name="Yes, more like this").click()
        assert "more papers like this one" in page.get_by_role("status").inner_text()
        assert votes_in(app) == [(entry_id, 1, False)]
        page.screenshot(path=str(ARTIFACTS / "vote-recorded.png"), full_page=True)

        page.get_by_role("button", name="Undo my vote").click()
        assert "taken back" in page.get_by_role("status").inner_text()
        assert votes_in(app) == []
        # Undone, the page offers the vote again.
        assert page.get_by_role("button", name="Yes, more like this").is_visible()
        page.get_by_role("button", name="Yes, more like this").click()
        assert votes_in(app) == [(entry_id, 1, False)]

        page.goto(web.base_url + prefs_path)
        votes_card = page.locator("#votes")
        assert "More like this" in votes_card.inner_text()
        page.get_by_label("Papers I like").fill(f"{entry_id + 1}")
        page.get_by_role("button", name="Save preferences").click()
        assert "saved" in page.get_by_role("status").inner_text()
        assert (entry_id + 1, 1, True) in votes_in(app)
        page.get_by_label("Papers I like").fill("2312.99999")
        page.get_by_role("button", name="Save preferences").click()
        assert "not in the database" in page.locator("#liked_papers-error").inner_text()
        page.screenshot(path=str(ARTIFACTS / "vote-preferences.png"), full_page=True)

        page.goto(web.base_url + prefs_path)
        page.get_by_role("button", name="Clear all votes").click()
        assert "Cleared 1 vote" in page.get_by_role("status").inner_text()
        # The liked paper stays: it is a preference, not a vote.
        assert votes_in(app) == [(entry_id + 1, 1, True)]
        assert "No votes yet" in page.locator("#votes").inner_text()
        context.close()
    assert problems == []
