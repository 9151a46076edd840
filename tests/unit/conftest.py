"""tests/unit: no database, no network, so that they run in seconds anywhere.

A unit test that asks for a database or a server fixture, opens a network connection or a
SQLite file is refused with one line saying where it belongs (tests/integration)."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

SERVICE_FIXTURES = {
    "app",
    "db_url",
    "empty_db_url",
    "settings",
    "sqlite_url",
    "empty_sqlite_url",
    "postgres_url",
    "empty_postgres_url",
    "smtp_server",
    "dovecot",
}
WHERE = "belongs in tests/integration (tests/unit use no database and no network)"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture is set up (a database fixture would already have made one)."""
    wanted = sorted(SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())))
    if wanted:
        pytest.fail(f"{item.nodeid} uses {', '.join(wanted)}: it {WHERE}", pytrace=False)


@pytest.fixture(autouse=True)
def _no_network_no_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(what: str) -> Any:
        def refused(*_args: Any, **_kwargs: Any) -> Any:
            pytest.fail(f"a unit test opened {what}: it {WHERE}", pytrace=False)

        return refused

    for method in ("connect", "connect_ex"):
        original = getattr(socket.socket, method)

        def guarded(self: socket.socket, address: Any, _original: Any = original) -> Any:
            if self.family in (socket.AF_INET, socket.AF_INET6):
                refuse(f"a network connection to {address!r}")()
            return _original(self, address)

        monkeypatch.setattr(socket.socket, method, guarded)
    monkeypatch.setattr(sqlite3, "connect", refuse("a SQLite database"))
    yield
