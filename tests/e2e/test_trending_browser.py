"""The public trending page in real Chromium (uvicorn on 127.0.0.1, a real SMTP server): the
seed papers in trending order under a working subscribe form, at phone and desktop widths,
with no horizontal scrolling. Screenshots go to test-artifacts/trending/."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.paths import data_dir
from digestd.core.tokens import links, view_url
from digestd.ingest.run import ingest_file
from digestd.ranking.select import Profile, Selector
from tests.support.browser import ARTIFACTS
from tests.support.digests import KENJI, add_subscriber, load_seed_entries, record_sent
from tests.support.smtp import SmtpTestServer
from tests.support.web import running_web, subscriber, wait_for_messages

pytestmark = pytest.mark.browser

SHOTS = ARTIFACTS / "trending"
UNLABELLED_JS = """() => [
    ...document.querySelectorAll('input:not([type=hidden]), select, textarea')
    ].filter(el => !el.labels || el.labels.length === 0).map(el => el.name || el.id)"""


def test_home_shows_the_trending_papers_under_a_working_form(
    shared_browser: Any, app: AppContext, smtp_server: SmtpTestServer, clock: Any
) -> None:
    seeds = str(data_dir("seeds") / "trending-papers.json")
    # In a thread of its own: Playwright's sync API runs an event loop in this one.
    with ThreadPoolExecutor(1) as pool:
        report = pool.submit(asyncio.run, ingest_file(app, seeds)).result(timeout=60)
    assert report.new == 61
    clock.advance(hours=2)
    now = app.now()
    with session_scope(app.engine) as s:
        start = now - timedelta(days=1)
        picks = Selector.load(s, start, now).select(Profile("", (), 30, start, now))
        expected = [" ".join(p.entry.title.split()) for p in picks]
    SHOTS.mkdir(parents=True, exist_ok=True)
    with running_web(app, smtp_server) as web:
        for width in (390, 1280):
            context = shared_browser.new_context(viewport={"width": width, "height": 900})
            context.set_default_timeout(10_000)
            page = context.new_page()
            problems = watch_console(page)
            page.goto(web.base_url + "/")
            titles = page.locator(".paper-title").all_inner_texts()
            assert titles == expected
            form = page.locator("form.subscribe").bounding_box()
            first = page.locator(".paper").first.bounding_box()
            assert form is not None and first is not None
            assert form["y"] + form["height"] <= first["y"]  # the form, then the papers
            assert page.evaluate(UNLABELLED_JS) == []
            overflow = page.evaluate(
                "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"horizontal scroll of {overflow}px at {width}px"
            # The first paper's title links to the paper.
            link = page.locator(".paper-title a").first.get_attribute("href")
            assert link is not None and link.startswith("https://")
            page.screenshot(path=str(SHOTS / f"home-{width}.png"), full_page=False)
            if width == 390:
                page.get_by_label("Email address").fill("reader@example.org")
                page.get_by_role("button", name="Subscribe").click()
                page.get_by_role("heading", name="Check your inbox").wait_for()
                # The sign-up is recorded after the answer is out (so its timing cannot tell
                # a known address from a new one): wait, bounded, for what the person sees
                # next, the confirmation mail, which is sent once the row is written.
                [mail] = wait_for_messages(smtp_server, 1)
                assert mail.recipients == ["reader@example.org"]
                pending = subscriber(web.ctx, "reader@example.org")
                assert pending is not None and pending.status == "pending"
            else:
                page.goto(web.base_url + "/archive")
                page.screenshot(path=str(SHOTS / "archive-1280.png"), full_page=False)
                page.get_by_role("link", name="Thu 26 Nov 2026").click()
                assert page.locator(".paper-title").all_inner_texts() == expected
                page.screenshot(path=str(SHOTS / "archive-day-1280.png"), full_page=False)
            assert problems == []
            context.close()
    assert len(smtp_server.messages) == 1


def watch_console(page: Any) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    return problems


def test_a_digest_viewed_in_the_browser_on_a_phone(
    shared_browser: Any, app: AppContext, smtp_server: SmtpTestServer, clock: Any
) -> None:
    now = app.now()
    with session_scope(app.engine) as s:
        entries = load_seed_entries(s, now - timedelta(hours=2))
        sub = add_subscriber(s, "kenji@example.org", now - timedelta(days=3), **KENJI)
        start = now - timedelta(days=1)
        picks = Selector(entries).select(Profile.for_subscriber(sub, start, now))
        record_sent(s, sub, [p.entry for p in picks], period="2026-11-26", window_start=start,
                    window_end=now)  # fmt: skip
        sub_id, key = sub.id, sub.link_key
    with running_web(app, smtp_server) as web:
        view = links(web.base_url, web.ctx.secret_key, ("view",), sub_id or 0, key)[0]
        context = shared_browser.new_context(viewport={"width": 390, "height": 900})
        page = context.new_page()
        problems = watch_console(page)
        page.goto(view_url(view, "2026-11-26"))
        titles = page.locator(".paper-title").all_inner_texts()
        assert titles == [" ".join(p.entry.title.split()) for p in picks] and len(titles) == 3
        assert page.locator(".why").first.inner_text().startswith("Why: matches: ")
        assert "kenji" not in page.content()
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        page.screenshot(path=str(SHOTS / "view-in-browser-390.png"), full_page=False)
        assert problems == []
        context.close()
