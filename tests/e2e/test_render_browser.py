"""A rendered digest in real headless Chromium: fits a phone and a desktop, every title shows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from digestd.core.config import Settings
from digestd.mail.render import Renderer
from digestd.ranking.select import Profile, Selector
from tests.support.browser import ARTIFACTS
from tests.support.digests import seed_entries

pytestmark = pytest.mark.browser

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def digest_html() -> tuple[str, list[str]]:
    entries = seed_entries(NOW)
    # make the page hard to fit: many authors, categories and an unbreakable long token
    entries[0].authors = [f"Author {i}" for i in range(12)]
    entries[0].categories = ["cs.CV", "cs.LG", "cs.AI"]
    entries[1].title += " " + "Supercalifragilistic" * 6
    profile = Profile("", (), 12, NOW - timedelta(days=1), NOW)
    picks = Selector(entries).select(profile)
    r = Renderer(Settings(from_address="Papers Digest <papers@example.org>"))
    body = r.render_digest(profile, picks, day=NOW.date(), fmt="html")
    mail = r.personalize(
        body,
        email="ada@example.org",
        unsubscribe_url="https://digest.example.org/unsubscribe/" + "T" * 120,
        preferences_url="https://digest.example.org/preferences/" + "P" * 120,
        view_url="https://digest.example.org/view/" + "V" * 120 + "/2026-11-26",
    )
    assert mail.html is not None
    return mail.html, [" ".join(p.entry.title.split()) for p in picks]


@pytest.mark.parametrize("width", [375, 800])
def test_digest_fits_the_screen_and_shows_every_title(shared_browser: Any, width: int) -> None:
    html, titles = digest_html()
    ARTIFACTS.mkdir(exist_ok=True)
    context = shared_browser.new_context(viewport={"width": width, "height": 900})
    try:
        page = context.new_page()
        # loopback only: the email must not need the network at all
        page.route("**/*", lambda route: route.abort())
        page.set_content(html, wait_until="load")
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        inner_width = page.evaluate("window.innerWidth")
        assert scroll_width <= inner_width, f"horizontal scroll at {width}px"
        links = page.locator("h2 a")
        assert links.count() == len(titles)
        for i, title in enumerate(titles):
            link = links.nth(i)
            assert " ".join(link.inner_text().split()) == title
            assert link.is_visible()
            box = link.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
        page.screenshot(path=str(ARTIFACTS / f"digest-{width}.png"), full_page=True)
    finally:
        context.close()
    assert (ARTIFACTS / f"digest-{width}.png").stat().st_size > 10_000
