"""Headless Chromium for tests: Debian's package, driven by Playwright; never downloaded."""

from __future__ import annotations

import os
from collections.abc import Iterator
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


@pytest.fixture(scope="module")
def shared_browser() -> Iterator[Any]:
    """One headless Chromium shared by a module's tests (import this fixture into it). Not
    per session: Playwright's sync API keeps its event loop running while it is open, which
    the asyncio tests of other modules must not find."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
