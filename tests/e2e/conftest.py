"""Fixtures of the end-to-end tests, declared once: the CLI on this test's database."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.browser import chromium_session, shared_browser
from tests.support.digests import KENJI, seed_database
from tests.support.subscribers import Invoke, make_invoke

CLI_SECRET = "e2e-cli-secret-key-0123456789"

# The browser tests' Chromium: one a test process (fixtures).
__all__ = ["chromium_session", "shared_browser"]


@pytest.fixture
def invoke(
    request: pytest.FixtureRequest, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Invoke:
    """`invoke("subscribers", "list")` runs `digestd subscribers list` in process on db_url,
    from an empty folder (no stray .env from the checkout). `pytest.mark.cli_env(NAME=value)`
    on a test or module adds DIGESTD_* settings."""
    monkeypatch.chdir(tmp_path)
    extra: dict[str, str] = {}
    for mark in reversed(list(request.node.iter_markers("cli_env"))):
        extra.update(mark.kwargs)
    return make_invoke(db_url, **extra)


@pytest.fixture
def env(sqlite_url: str) -> dict[str, str]:
    """The settings of a `run_cli` on a SQLite database with the seed papers of the last hours
    and two subscribers: kenji@example.org (topics the papers match) and zed@example.org
    (topics none does). Placed relative to the real clock, which the commands read."""
    seed_database(
        sqlite_url,
        datetime.now(UTC),
        {"kenji@example.org": KENJI, "zed@example.org": {"topics": "quantum chromodynamics"}},
    )
    return {
        "DIGESTD_DATABASE_URL": sqlite_url,
        "DIGESTD_SECRET_KEY": CLI_SECRET,
        "DIGESTD_BASE_URL": "https://digest.example.org",
    }
