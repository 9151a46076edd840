"""Engine, sessions and migrations for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, create_engine

from digestd.core.paths import data_dir

SQLITE_BUSY_TIMEOUT_MS = 30000
READ_ONLY_OPTION = "digestd_read_only"
# A table's PostgreSQL statistics count as stale after this many changed rows plus this
# fraction of its rows: autovacuum's rule (50 + 10 %), looser, so that where autovacuum runs
# and keeps up it gets there first.
STALE_ROWS = 1000
STALE_FRACTION = 0.2
T = TypeVar("T")
log = logging.getLogger("digestd.core.db")


def chunks(values: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """`values` in slices of `size`: IN lists and multi-row inserts stay below every
    backend's bound-parameter limit (itertools.batched needs Python 3.12)."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def sql_date(value: Any) -> date:
    """A `func.date(...)` result as a date: SQLite returns a string, PostgreSQL a date."""
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def redact_url(url: str) -> str:
    """A database URL with any password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<database url>"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with the pragmas this project relies on (WAL, foreign keys, busy timeout)."""
    if url.startswith("sqlite"):
        db_path = make_url(url).database
        if db_path and db_path != ":memory:":
            parent = Path(db_path).expanduser().parent
            # A typo in the path must not quietly start an empty database elsewhere.
            if not parent.is_dir():
                raise FileNotFoundError(f"directory {parent} does not exist")
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            **kwargs,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # pysqlite's own transaction handling is replaced by explicit BEGIN below,
            # so that `BEGIN IMMEDIATE` can be used where writers must serialize.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # IMMEDIATE takes the write lock at BEGIN: two writers wait on busy_timeout
            # instead of failing later with "database is locked" on lock upgrade.
            # Readers (`read_scope`) take no lock: under WAL they never wait for a writer.
            read_only = conn.get_execution_options().get(READ_ONLY_OPTION)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


@contextmanager
def read_scope(engine: Engine) -> Iterator[Session]:
    """A session for reads only (public pages under load): on SQLite a plain BEGIN, so it
    neither takes nor waits for the write lock; rolled back at the end (it wrote nothing)."""
    with engine.connect() as conn:
        conn.execution_options(**{READ_ONLY_OPTION: True})
        with Session(bind=conn, expire_on_commit=False) as session:
            yield session


def alembic_config(engine: Engine) -> Any:
    """An Alembic config pointing at `migrations/`, bound to this engine (no alembic.ini needed)."""
    cfg = _migrations_config()
    cfg.attributes["engine"] = engine
    return cfg


def _migrations_config() -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(data_dir("migrations")))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision`; safe to call on every start (a no-op when current)."""
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    """The newest migration of this install (read once a process: the files do not change
    under a running program)."""
    from alembic.script import ScriptDirectory

    head: str | None = ScriptDirectory.from_config(_migrations_config()).get_current_head()
    return head


def at_head(engine: Engine) -> bool:
    """True when the schema is already at the newest migration: one read of alembic_version,
    so that every command's `migrate()` costs a query instead of loading Alembic's
    environment. Anything unexpected (no table yet, several heads) says False, and the full
    upgrade decides."""
    try:
        with engine.connect() as conn:
            # A read: on SQLite a plain BEGIN, which does not take the write lock.
            conn.execution_options(**{READ_ONLY_OPTION: True})
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    except DBAPIError:
        return False
    head = head_revision()
    return head is not None and [row[0] for row in versions] == [head]


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at (None when empty)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def refresh_statistics(engine: Engine, tables: Sequence[str]) -> list[str]:
    """ANALYZE those of `tables` whose PostgreSQL statistics are missing or stale, so that the
    batch queries keep their index plans; returns the tables analyzed (none on SQLite).

    PostgreSQL plans from statistics that autovacuum gathers, when it is on and has caught
    up. Without them (a large import just before a send hour, autovacuum off or behind) it
    guesses: a page of 500 subscribers' deliveries became a scan of every row, seconds a
    batch (benchmarks/README.md). Costs one catalog query when nothing is stale.
    """
    if engine.dialect.name != "postgresql" or not tables:
        return []
    done: list[str] = []
    # Autocommit: ANALYZE's lock is released at once, and it never rides in a caller's
    # transaction. SKIP_LOCKED: a table another replica (or autovacuum) is analyzing now
    # is skipped, not waited for.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        rows = conn.execute(
            text(
                "SELECT c.relname, s.n_mod_since_analyze, c.reltuples"
                " FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid"
                " WHERE c.oid IN (SELECT to_regclass(n) FROM unnest(CAST(:names AS text[])) n)"
            ),
            {"names": list(tables)},
        ).all()
        quote = engine.dialect.identifier_preparer.quote
        for name, changed, rows_now in rows:
            if changed <= STALE_ROWS + STALE_FRACTION * max(rows_now, 0):
                continue
            try:
                conn.exec_driver_sql(f"ANALYZE (SKIP_LOCKED) {quote(name)}")
            except DBAPIError as exc:  # not the owner, say: plans may be slow, nothing breaks
                log.warning("could not analyze table %s: %s", name, str(exc.orig).strip())
                continue
            done.append(name)
    return done
