"""A reader uploads their library from the preference centre in a real browser: the file
input, the notice saying what was imported, the offered authors' button. Screenshots go
to test-artifacts/web/."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from digestd.core.context import AppContext
from digestd.core.db import session_scope
from tests.support.browser import ARTIFACTS as BROWSER_ARTIFACTS
from tests.support.digests import add_subscriber
from tests.support.smtp import SmtpTestServer
from tests.support.web import link_for, running_web, subscriber

pytestmark = pytest.mark.browser

ARTIFACTS = BROWSER_ARTIFACTS / "web"
NOW = datetime(2026, 11, 26, 8, 30, tzinfo=UTC)
LIBRARY = Path(__file__).parents[1] / "fixtures" / "library" / "interpretability.bib"


@pytest.fixture
def browser(shared_browser: Any) -> Any:
    return shared_browser


def test_a_reader_imports_their_library_and_follows_its_authors_in_a_browser(
    browser: Any, app: AppContext, smtp_server: SmtpTestServer, clock
) -> None:
    clock.set(NOW)
    with session_scope(app.engine) as s:
        sub = add_subscriber(s, "ada@example.org", NOW - timedelta(days=10), topics="")
    path = link_for(app, "preferences", sub)
    with running_web(app, smtp_server) as web:
        context = browser.new_context(locale="en-US", viewport={"width": 800, "height": 900})
        context.set_default_timeout(10_000)
        page = context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.goto(web.base_url + path)
        page.get_by_label("Library file").set_input_files(str(LIBRARY))
        page.get_by_role("button", name="Import my library").click()
        page.get_by_text("20 papers from your library will shape your next digests.").wait_for()
        assert page.get_by_text("Frequent authors in your library").is_visible()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.locator("#library-form").screenshot(path=str(ARTIFACTS / "library-imported.png"))
        page.get_by_role("button", name="Follow them").click()
        page.get_by_text("You now follow Neel Nanda").wait_for()
        assert page.get_by_text("20 papers from your library shape your digests").is_visible()
        context.close()
    assert problems == []
    after = subscriber(app, "ada@example.org")
    assert after is not None and after.follows[:2] == ["Neel Nanda", "Chris Olah"]
