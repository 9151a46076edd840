"""Headless Chromium for tests: Debian's package, driven by Playwright; never downloaded."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import skip_or_fail

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

# Without the background-networking flags Chromium tries to reach Google's hosts, which
# this machine's closed network refuses; --no-sandbox because tests run as root here.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    """The Chromium binary (DIGESTD_TEST_CHROMIUM or /usr/bin/chromium); skip, or fail under CI."""
    path = os.environ.get("DIGESTD_TEST_CHROMIUM") or "/usr/bin/chromium"
    if not Path(path).exists():
        skip_or_fail(f"headless Chromium not found at {path} (set DIGESTD_TEST_CHROMIUM)")
    return path


@dataclass
class _Chromium:
    """The session's Playwright, its Chromium, and the event loop Playwright runs on."""

    playwright: Any
    browser: Any
    loop: asyncio.AbstractEventLoop


@pytest.fixture(scope="session")
def chromium_session() -> Iterator[_Chromium]:
    """One headless Chromium for the whole test process (starting Playwright's driver and
    Chromium took about 1.2 s, once a module before). Use `shared_browser`, not this.

    Playwright's sync API runs its own event loop and, after each of its calls, leaves that
    loop marked as this thread's running loop: the asyncio tests run in between (other
    modules' tests, on the same pytest-xdist worker) would find a loop already running and
    could not start theirs. So the mark is taken off whenever no browser test runs and put
    back for the browser tests (the loop is idle then: Playwright's dispatcher waits in it
    for the next call)."""
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
    except BaseException:
        playwright.stop()
        raise
    chromium = _Chromium(playwright, browser, asyncio.get_running_loop())
    asyncio._set_running_loop(None)
    yield chromium
    asyncio._set_running_loop(chromium.loop)
    try:
        browser.close()
    finally:
        playwright.stop()
        asyncio._set_running_loop(None)


@pytest.fixture
def shared_browser(chromium_session: _Chromium) -> Iterator[Any]:
    """The process's one headless Chromium, for this test; the browser contexts the test
    leaves open are closed after it (each test makes its own: cookies, storage, viewport)."""
    asyncio._set_running_loop(chromium_session.loop)
    try:
        yield chromium_session.browser
        for context in list(chromium_session.browser.contexts):
            context.close()
    finally:
        asyncio._set_running_loop(None)
