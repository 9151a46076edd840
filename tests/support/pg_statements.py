"""Which statements digestd sends PostgreSQL in a test run, and from which tests (opt-in).

`pytest -p tests.support.pg_statements ...` writes test-artifacts/pg-statements.json:
{statement: [test ids]}, each statement normalized (whitespace, parameter names and
numbers, the lengths of IN lists and VALUES rows) and only when digestd's own code sent it
(not a test's assertion query, not the fixtures' schema checks). With xdist, the workers'
sets are merged. `python -m tests.support.pg_statements ALL.json QUICK.json` prints the
statements of ALL that QUICK never sent: how issue 24's quick check, which runs most
tests on SQLite only (tests/conftest.py), was checked to keep each feature's statements on
PostgreSQL.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

import digestd

OUT = Path("test-artifacts/pg-statements.json")
PACKAGE = str(Path(digestd.__file__).parent) + "/"
PROJECT = str(Path(digestd.__file__).parent.parent) + "/"

_current: list[str] = []
_seen: dict[str, set[str]] = {}


def normalize(statement: str) -> str:
    """One text for the statements that differ only in parameters or list lengths."""
    s = re.sub(r"\s+", " ", statement.strip())
    s = re.sub(r"%\(([A-Za-z]+(?:_[A-Za-z]+)*)[_\d]*\)s", r"%(\1)s", s)
    s = re.sub(r"(%\(\w+\)s(::[\w ]+)?)(, %\(\w+\)s(::[\w ]+)?)+", r"\1, ...", s)
    s = re.sub(r"(\([^()]*\))(, \([^()]*\))+", r"\1, ...", s)
    s = re.sub(r"\btpool_\w+\b|\bt_[0-9a-f]{12}\b", "SCHEMA", s)
    return re.sub(r"\b\d+\b", "N", s)


def _sent_by_digestd() -> bool:
    """The innermost frame of this project (past SQLAlchemy's, the venv's) is in digestd."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(PROJECT) and "/site-packages/" not in name and name != __file__:
            return name.startswith(PACKAGE)
        frame = frame.f_back  # type: ignore[assignment]
    return False


@event.listens_for(Engine, "before_cursor_execute")
def _record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
    if _current and conn.dialect.name == "postgresql" and _sent_by_digestd():
        _seen.setdefault(normalize(statement), set()).add(_current[-1])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    _current.append(item.nodeid)
    try:
        return (yield)
    finally:
        _current.pop()


def pytest_testnodedown(node: Any, error: object) -> None:
    """xdist controller: a worker's statements join this process's."""
    for statement, tests in node.workeroutput.get("pg_statements", {}).items():
        _seen.setdefault(statement, set()).update(tests)


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller writes the file
        workeroutput["pg_statements"] = {s: sorted(t) for s, t in _seen.items()}
        return
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({s: sorted(t) for s, t in sorted(_seen.items())}, indent=1))


def main(everything: str, quick: str) -> int:
    """Print the statements of `everything` that `quick` never sent, with a test that does."""
    sent = json.loads(Path(quick).read_text())
    every = json.loads(Path(everything).read_text())
    missing = {s: t for s, t in every.items() if s not in sent}
    for statement, tests in sorted(missing.items()):
        print(f"{statement[:160]}\n    e.g. {tests[0]}")
    print(f"{len(missing)} of the first run's {len(every)} statements not sent in the second")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:3]))
