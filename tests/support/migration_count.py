"""How many times the suite runs Alembic (issue 24's measure): a pytest plugin, loaded by
tests/conftest.py, that counts `alembic.command.upgrade` and `downgrade` calls in every test
process (each pytest-xdist worker reports its count to the controller) and prints the total
at the end of the run.

`AppContext.migrate()` on a database already at the newest migration reads alembic_version
and does not call Alembic, so it is not counted; a `digestd` started as a separate process
(the daemon tests) runs in its own interpreter and is not counted either.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

KEY = "alembic_runs"
_runs: Counter[str] = Counter()
_TOTALS = pytest.StashKey[Counter[str]]()


def pooled() -> None:
    """One migration of a database handed out migrated (a SQLite template, a pooled schema)."""
    _runs["pooled"] += 1


def pytest_configure(config: pytest.Config) -> None:
    from alembic import command

    for name in ("upgrade", "downgrade"):
        original = getattr(command, name)

        def counted(*args: Any, _name: str = name, _original: Any = original, **kw: Any) -> Any:
            _runs[_name] += 1
            return _original(*args, **kw)

        setattr(command, name, counted)
    config.stash[_TOTALS] = Counter()


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # a pytest-xdist worker: the controller adds them up
        workeroutput[KEY] = dict(_runs)
    else:
        session.config.stash[_TOTALS].update(_runs)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    runs = getattr(node, "workeroutput", {}).get(KEY, {})
    node.config.stash[_TOTALS].update(runs)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    totals = config.stash[_TOTALS]
    terminalreporter.write_line(
        f"alembic in the test processes: {totals['upgrade']} upgrades ({totals['pooled']} of"
        f" them migrating the SQLite templates and PostgreSQL schemas handed out migrated),"
        f" {totals['downgrade']} downgrades"
    )
