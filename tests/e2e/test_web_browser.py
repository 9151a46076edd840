"""A real browser (headless Chromium) against uvicorn on 127.0.0.1, with a real SMTP server.

The whole double opt-in: fill the form, get the mail, follow its link, change preferences,
unsubscribe with the page's one-click button. Screenshots go to test-artifacts/web/.
"""

from __future__ import annotations

from typing import Any

import pytest

from digestd.core.context import AppContext
from tests.support.browser import ARTIFACTS as BROWSER_ARTIFACTS
from tests.support.smtp import SmtpTestServer
from tests.support.web import (
    html_part,
    link_in,
    running_web,
    subscriber,
    wait_for_messages,
)

pytestmark = pytest.mark.browser

ARTIFACTS = BROWSER_ARTIFACTS / "web"

# Every visible form control must have a label a screen reader can announce.
UNLABELLED_JS = """() => [
    ...document.querySelectorAll('input:not([type=hidden]), select, textarea')
    ].filter(el => !el.labels || el.labels.length === 0).map(el => el.name || el.id)"""


@pytest.fixture
def browser(shared_browser: Any) -> Any:
    return shared_browser


def shot(page: Any, name: str, request: pytest.FixtureRequest) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    suffix = request.node.callspec.id if hasattr(request.node, "callspec") else "x"
    page.screenshot(path=str(ARTIFACTS / f"{name}-{suffix}.png"), full_page=True)


def watch_console(page: Any) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    return problems


def test_subscribe_confirm_change_preferences_and_unsubscribe_in_a_browser(
    browser: Any, app: AppContext, smtp_server: SmtpTestServer, request: pytest.FixtureRequest
) -> None:
    with running_web(app, smtp_server) as web:
        context = browser.new_context(
            timezone_id="Asia/Tokyo", locale="en-US", viewport={"width": 900, "height": 1000}
        )
        context.set_default_timeout(10_000)
        page = context.new_page()
        problems = watch_console(page)

        page.goto(web.base_url + "/")
        assert page.locator("html").get_attribute("lang") == "en"
        assert page.evaluate(UNLABELLED_JS) == []
        # The choices beyond the address are folded away above the trending papers.
        page.get_by_text("Choose topics, categories and when it arrives").click()
        # The tiny script picked the browser's zone.
        assert page.get_by_label("Time zone").input_value() == "Asia/Tokyo"
        page.get_by_label("Email address").fill("Ada.Lovelace@Example.org")
        page.get_by_label("Topics").fill("diffusion models, protein folding")
        page.get_by_label("Computer vision").check()
        page.get_by_label("Once a week").check()
        page.get_by_label("Hour").select_option("7")
        page.get_by_label("Day of the week").select_option(label="Wednesday")
        shot(page, "1-subscribe", request)
        # Keyboard users see where they are.
        page.get_by_label("Email address").focus()
        page.keyboard.press("Tab")
        outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
        assert outline == "solid"
        page.get_by_role("button", name="Subscribe").click()
        page.get_by_role("heading", name="Check your inbox").wait_for()
        shot(page, "2-check-inbox", request)
        # The sign-up is recorded after the answer is out (its timing must not tell a known
        # address from a new one): wait, bounded, for the confirmation mail, which is sent
        # once the row is written, before reading the row.
        [mail] = wait_for_messages(smtp_server, 1)
        assert mail.recipients == ["ada.lovelace@example.org"]
        pending = subscriber(web.ctx, "ada.lovelace@example.org")
        assert pending is not None and pending.status == "pending"
        confirm_url = link_in(mail, "confirm")
        assert confirm_url.startswith(web.base_url + "/confirm/")
        mail_page = context.new_page()
        mail_page.set_content(html_part(mail))
        shot(mail_page, "3-confirmation-email", request)
        mail_page.close()

        page.goto(confirm_url)
        confirm_button = page.get_by_role("button", name="Confirm my subscription")
        confirm_button.wait_for()
        # The link's page alone confirms nothing (a mail scanner opens it too).
        shown = subscriber(web.ctx, "ada.lovelace@example.org")
        assert shown is not None and shown.status == "pending"
        confirm_button.click()
        page.get_by_text("Your subscription is confirmed").wait_for()
        shot(page, "4-confirmed-preferences", request)
        active = subscriber(web.ctx, "ada.lovelace@example.org")
        assert active is not None and active.status == "active"
        assert (active.timezone, active.frequency, active.send_hour, active.send_weekday) == (
            "Asia/Tokyo",
            "weekly",
            7,
            2,
        )
        assert active.categories == ["cs.CV"] and active.topics.startswith("diffusion")

        assert page.evaluate(UNLABELLED_JS) == []
        page.get_by_label("Hour").select_option("21")
        page.get_by_label("Papers per email").fill("5")
        page.get_by_label("Plain text").check()
        page.get_by_label("cs.LG Machine learning", exact=True).check()
        page.get_by_role("button", name="Save preferences").click()
        page.get_by_text("Your preferences are saved").wait_for()
        changed = subscriber(web.ctx, "ada.lovelace@example.org")
        assert changed is not None
        assert (changed.send_hour, changed.max_items, changed.format) == (21, 5, "text")
        assert changed.categories == ["cs.CV", "cs.LG"]

        # The page's Unsubscribe button posts List-Unsubscribe=One-Click (RFC 8058).
        page.get_by_role("button", name="Unsubscribe").click()
        page.get_by_role("heading", name="You are unsubscribed").wait_for()
        shot(page, "5-unsubscribed", request)
        gone = subscriber(web.ctx, "ada.lovelace@example.org")
        assert gone is not None and gone.status == "unsubscribed"
        assert problems == []  # no CSP violations, no script errors
        context.close()


def test_the_form_works_without_javascript(
    browser: Any, app: AppContext, smtp_server: SmtpTestServer, request: pytest.FixtureRequest
) -> None:
    with running_web(app, smtp_server) as web:
        context = browser.new_context(java_script_enabled=False, timezone_id="Asia/Tokyo")
        page = context.new_page()
        page.goto(web.base_url + "/")
        page.get_by_text("Choose topics, categories and when it arrives").click()
        assert page.get_by_label("Time zone").input_value() == "UTC"  # no detection
        page.get_by_label("Email address").fill("nojs@example.org")
        page.get_by_label("Time zone").select_option("Europe/Berlin")
        page.get_by_role("button", name="Subscribe").click()
        page.get_by_role("heading", name="Check your inbox").wait_for()
        [mail] = wait_for_messages(smtp_server, 1)  # the row is written before the mail goes
        assert mail.recipients == ["nojs@example.org"]
        sub = subscriber(web.ctx, "nojs@example.org")
        assert sub is not None and sub.timezone == "Europe/Berlin"

        # A bad address comes back with its message next to the field, focusable summary.
        page.goto(web.base_url + "/")
        page.get_by_label("Email address").fill("not an address")
        page.get_by_role("button", name="Subscribe").click()
        error = page.locator("#email-error")
        error.wait_for()
        assert "not a valid email address" in error.inner_text()
        assert page.get_by_label("Email address").get_attribute("aria-invalid") == "true"
        shot(page, "6-form-error-nojs", request)
        context.close()
    assert len(smtp_server.messages) == 1
