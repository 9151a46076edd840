"""Accessibility and dark mode in real Chromium: axe-core (vendored, tests/support/axe) finds
no serious or critical violation on the home page, the preference page and a rendered
digest, in the light and the dark scheme (emulated), at 375 and 800 px. Screenshots of each
go to test-artifacts/a11y/."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.paths import data_dir
from digestd.core.tokens import links
from digestd.ingest.run import ingest_file
from digestd.mail.render import Renderer
from digestd.ranking.select import Profile, Selector
from tests.support.browser import ARTIFACTS
from tests.support.digests import add_subscriber
from tests.support.smtp import SmtpTestServer
from tests.support.web import running_web

pytestmark = pytest.mark.browser

AXE = (Path(__file__).resolve().parents[1] / "support" / "axe" / "axe.min.js").read_text()
SHOTS = ARTIFACTS / "a11y"
RUN_AXE = """async () => {
  const r = await axe.run(document, {resultTypes: ['violations']});
  return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 3).map(n => n.target.join(' ') + ': ' + n.failureSummary)}));
}"""


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """SQLite only: the pages, the digest and their screenshots are the same on both databases
    (the PostgreSQL run rendered the same seed papers and overwrote the same screenshots); the
    pages on PostgreSQL are driven in Chromium by test_web_browser and test_trending_browser."""
    return sqlite_url


def check(page: Any, name: str, found: dict[str, list[str]]) -> None:
    """Screenshots at 375 and 800 px in both schemes, and axe's serious/critical findings."""
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for width in (375, 800):
            page.set_viewport_size({"width": width, "height": 900})
            page.screenshot(path=str(SHOTS / f"{name}-{width}-{scheme}.png"), full_page=True)
            if page.evaluate("typeof axe === 'undefined'"):  # once a page (550 kB to parse)
                page.add_script_tag(content=AXE)
            for v in page.evaluate(RUN_AXE):
                if v["impact"] in ("serious", "critical"):
                    found.setdefault(f"{name} {scheme} {width}px", []).append(
                        f"{v['id']} ({v['impact']}): {v['help']} {v['nodes']}"
                    )


def test_pages_and_digest_pass_axe_in_light_and_dark(
    shared_browser: Any, app: AppContext, smtp_server: SmtpTestServer, clock: Any
) -> None:
    seeds = str(data_dir("seeds") / "trending-papers.json")
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(asyncio.run, ingest_file(app, seeds)).result(timeout=60).new == 61
    clock.advance(hours=2)
    now = app.now()
    with session_scope(app.engine) as s:
        sub = add_subscriber(s, "ada@example.org", now - timedelta(days=3))
        sub_id, key = sub.id or 0, sub.link_key
        start = now - timedelta(days=1)
        profile = Profile('"attention heads"', (), 10, start, now)
        picks = Selector.load(s, start, now).select(profile)
    renderer = Renderer(app.settings)
    body = renderer.render_digest(profile, picks, day=now.date())
    digest = renderer.personalize(
        body,
        email="ada@example.org",
        unsubscribe_url="https://digest.example.org/unsubscribe/T",
        preferences_url="https://digest.example.org/preferences/T",
        view_url="https://digest.example.org/view/T/2026-11-26",
        vote_url="https://digest.example.org/vote/T",
        vote_macs=["0" * 16] * (2 * len(body.entry_ids)),
    )
    assert digest.html is not None
    SHOTS.mkdir(parents=True, exist_ok=True)
    found: dict[str, list[str]] = {}
    with running_web(app, smtp_server) as web:
        prefs = links(web.base_url, web.ctx.secret_key, ("preferences",), sub_id, key)[0]
        # bypass_csp: the pages forbid inline scripts, and axe is injected as one.
        context = shared_browser.new_context(locale="en-US", bypass_csp=True)
        page = context.new_page()
        page.goto(web.base_url + "/")
        check(page, "home", found)
        page.goto(prefs)
        check(page, "preferences", found)
        page.set_content(digest.html)
        # Vote links name their paper for a screen reader.
        label = page.locator(".vote a").first.get_attribute("aria-label") or ""
        assert label.startswith("More like this: ") and len(label) > len("More like this: ")
        check(page, "digest", found)
        # Dark styles are real: the digest's card is dark when the scheme is.
        page.emulate_media(color_scheme="dark")
        card = page.locator("table.card").first.evaluate(
            "el => getComputedStyle(el).backgroundColor"
        )
        assert card == "rgb(22, 27, 34)", card
        context.close()
    assert found == {}, "\n".join(f"{k}: {v}" for k, v in found.items())
