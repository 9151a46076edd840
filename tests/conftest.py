"""Shared fixtures: real SQLite files, the real PostgreSQL, a real SMTP server, a fixed clock."""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from digestd.core.config import Settings
from digestd.core.context import AppContext
from tests.support.databases import (
    PostgresSchemas,
    copy_sqlite,
    make_sqlite_template,
    refuse_migrations,
    schema_url,
)
from tests.support.dovecot import DovecotServer, DovecotUnavailable
from tests.support.smtp import SmtpTestServer

# Commands print tables as wide as COLUMNS says, and the CLI's consoles read it when they are
# made (at import): the size of the terminal running the tests, or pytest-xdist's
# COLUMNS=80, must not decide what a test sees. Tests set the width they need.
for _size in ("COLUMNS", "LINES"):
    os.environ.pop(_size, None)

# Counts the suite's Alembic runs and prints them at the end (issue 24's measure).
pytest_plugins = ["tests.support.migration_count"]

FIXTURES = Path(__file__).parent / "fixtures"
POSTGRES_ENV = "DIGESTD_TEST_POSTGRES_URL"
UNDER_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


# What makes a test slow (seconds, not milliseconds): a real digestd process (the daemon, the
# console script, a terminal), a browser, or an explicit @pytest.mark.slow (the fuzzer, the
# soak). `pytest -m "not slow"` leaves them out: the quick check while developing. It also
# leaves out the PostgreSQL twin of a test that runs on both databases (db_url, empty_db_url):
# the quick check runs it on SQLite, the whole suite (CI) on both. Kept on PostgreSQL in the
# quick check: the migration tests (test_migration*.py), tests of PostgreSQL alone, and tests
# marked `backend`: those about what the database itself does (claims and leases, upserts, a
# store's statements) and, for each feature with statements of its own (votes, the replay
# guard, the mail-command caps, the pages' queries...), one test that sends them. A new store
# or query gets a `backend` test; `-p tests.support.pg_statements` lists what digestd sends
# PostgreSQL in a run, to compare. The twins left out were 34 s of the quick check's 109 s of
# test time (benchmarks/README.md, issue 24).
PROCESS_HELPERS = ("DaemonProcess", "run_cli_process", "run_in_terminal", "subprocess")


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: one worker more than this process may use cores. Much of a test's time is
    spent waiting (on PostgreSQL, Chromium, a digestd process, a socket timeout), and a
    worker waiting leaves its core to the others: on 2 cores, 3 workers ran the suite in
    114.9 s where 2 took 125.5 s (benchmarks/README.md, issue 24). PYTEST_XDIST_AUTO_NUM_WORKERS
    still decides when set."""
    configured = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS")
    if configured:
        return int(configured)
    return len(os.sched_getaffinity(0)) + 1


def pytest_configure(config: pytest.Config) -> None:
    from tests.support.cli import build_commands_once
    from tests.support.sql_cache import share_compiled_statements
    from tests.support.templates import compile_templates_once

    config.add_cleanup(build_commands_once())
    config.add_cleanup(compile_templates_once())
    config.add_cleanup(share_compiled_statements())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(item, "module", None)
        starts_processes = module is not None and any(
            name in vars(module) for name in PROCESS_HELPERS
        )
        if starts_processes or item.get_closest_marker("browser") or _postgres_twin(item):
            item.add_marker(pytest.mark.slow)


def pytest_collection_finish(session: pytest.Session) -> None:
    """What is loaded by now (digestd, the libraries, the collected tests) stays until the
    process ends: moved out of the garbage collector's reach, a full collection no longer
    walks it each time (those took 8.4 s of the workers' CPU in a suite)."""
    gc.freeze()


def _postgres_twin(item: pytest.Item) -> bool:
    """The PostgreSQL half of a test on both databases whose subject is not the database."""
    callspec = getattr(item, "callspec", None)
    params = callspec.params if callspec is not None else {}
    if "postgres" not in (params.get("db_url"), params.get("empty_db_url")):
        return False
    module = getattr(item, "module", None)
    migrations = module is not None and _is_migration_module(module.__name__)
    return not (migrations or item.get_closest_marker("backend"))


def postgres_base_url() -> str | None:
    return os.environ.get(POSTGRES_ENV)


def _postgres_available(url: str) -> str | None:
    try:
        engine = create_engine(url)
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # pragma: no cover - depends on the machine
        return str(exc).splitlines()[0]


def skip_or_fail(reason: str) -> None:
    """Under CI a missing service is a failure, elsewhere a visible skip."""
    if UNDER_CI:
        pytest.fail(f"{reason} (CI=true: a skipped test is a failure)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url_base() -> str:
    url = postgres_base_url()
    if not url:
        skip_or_fail(f"PostgreSQL tests need {POSTGRES_ENV}")
    problem = _postgres_available(url)  # type: ignore[arg-type]
    if problem:
        skip_or_fail(f"PostgreSQL at {url} is not reachable: {problem}")
    return url  # type: ignore[return-value]


@pytest.fixture(scope="session")
def postgres_schemas(postgres_url_base: str) -> Iterator[PostgresSchemas]:
    """This process's migrated PostgreSQL schemas (migrated once, reset between tests)."""
    pool = PostgresSchemas(postgres_url_base)
    yield pool
    pool.close()


def _migration_tests(request: pytest.FixtureRequest) -> bool:
    """Tests of the migrations themselves (modules named test_migration*) run them for real,
    so their databases start empty."""
    return _is_migration_module(request.module.__name__)


def _is_migration_module(name: str) -> bool:
    return name.rpartition(".")[2].startswith("test_migration")


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A URL whose connections live in a private schema of this test, at the newest migration
    with no rows (a schema migrated once this session, emptied after each test); empty, no
    migration applied, in the migration tests (test_migration*.py)."""
    if _migration_tests(request):
        yield request.getfixturevalue("empty_postgres_url")
        return
    pool: PostgresSchemas = request.getfixturevalue("postgres_schemas")
    schema = pool.take()
    refuse_migrations(monkeypatch, lambda url: schema in str(url.query.get("options", "")))
    yield schema_url(pool.base_url, schema)
    pool.give_back(schema)


@pytest.fixture
def empty_postgres_url(postgres_url_base: str) -> Iterator[str]:
    """A fresh, private, empty schema (no migration applied; dropped afterwards)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url_base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield schema_url(postgres_url_base, schema)
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once this session, copied for each test."""
    return make_sqlite_template(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture
def sqlite_url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """A real SQLite file of this test (tmp_path/digestd.db) at the newest migration (a copy
    of a file migrated once this session); not created yet, no migration applied, in the
    migration tests (test_migration*.py)."""
    if _migration_tests(request):
        return str(request.getfixturevalue("empty_sqlite_url"))
    path = tmp_path / "digestd.db"
    refuse_migrations(monkeypatch, lambda url: url.database == str(path))
    return copy_sqlite(request.getfixturevalue("sqlite_template"), path)


@pytest.fixture
def another_sqlite(request: pytest.FixtureRequest) -> Callable[[Path], str]:
    """`another_sqlite(path)`: one more SQLite database for the test (a second install, a
    fresh file to import into), at the newest migration: a copy of the session's template
    at `path`; its URL."""
    template: Path = request.getfixturevalue("sqlite_template")
    return lambda path: copy_sqlite(template, path)


@pytest.fixture
def empty_sqlite_url(tmp_path: Path) -> str:
    """A SQLite file that does not exist yet (no migration applied)."""
    return f"sqlite:///{tmp_path / 'digestd.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs on a real SQLite file and on the real PostgreSQL: at the
    newest migration with no rows (empty in the migration tests, see sqlite_url)."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_db_url(request: pytest.FixtureRequest) -> str:
    """Like db_url, but empty wherever the test is: no migration applied."""
    return str(request.getfixturevalue(f"empty_{request.param}_url"))


class FakeClock:
    """An injected clock: tests move time explicitly instead of sleeping."""

    def __init__(self, start: datetime) -> None:
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **kwargs: float) -> datetime:
        self.current += timedelta(**kwargs)
        return self.current

    def set(self, when: datetime) -> None:
        self.current = when


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 26, 6, 0, tzinfo=UTC))


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(database_url=db_url, secret_key="test-secret-key-0123456789")


@pytest.fixture
def app(settings: Settings, clock: FakeClock) -> Iterator[AppContext]:
    """A migrated AppContext on a real database, with the fake clock."""
    ctx = AppContext(settings=settings, clock=clock, actor="test")
    ctx.migrate()
    yield ctx
    ctx.dispose()


@pytest.fixture
def smtp_server() -> Iterator[SmtpTestServer]:
    server = SmtpTestServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    """One real Dovecot IMAP server for the whole run (each test takes a fresh user)."""
    try:
        server = DovecotServer().start()
    except DovecotUnavailable as exc:
        skip_or_fail(str(exc))
    yield server
    server.stop()
