"""Test databases migrated once a session: a SQLite file copied per test, PostgreSQL schemas
reset and handed out again.

Running every Alembic migration for each test was most of the suite's time (about 450 full
runs a suite). Here each pytest process (each xdist worker) migrates once per backend, for
real, with `digestd.core.db.upgrade`; tests then get a copy (SQLite) or a schema emptied to
the state right after migrating (PostgreSQL). The migrations keep their own tests on empty
databases (tests/integration/test_migrations.py).

PostgreSQL is shared with other test runs on the machine (other checkouts, other workers):
every schema has a name no one else uses, and nothing here touches a schema it did not make,
except schemas of this naming left behind more than a day ago by a killed run.
"""

from __future__ import annotations

import contextlib
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Connection, Engine

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import head_revision, make_engine

SCHEMA_PREFIX = "tpool_"
STALE_AFTER_S = 24 * 3600
# How long a test's PostgreSQL connections may take to end after it (bounded; polled).
CONNECTIONS_WAIT_S = 1.0


def migrate(url: str) -> None:
    """The real migrations, as every digestd command runs them."""
    from tests.support.migration_count import pooled  # loaded by conftest as a plugin first

    pooled()
    ctx = AppContext(Settings(database_url=url), actor="test")
    try:
        ctx.migrate()
    finally:
        ctx.dispose()


def schema_url(base_url: str, schema: str) -> str:
    """`base_url` with every connection's search_path set to `schema` (and the schema as
    application_name, so that its connections can be told apart from everyone else's)."""
    sep = "&" if "?" in base_url else "?"
    return f"{base_url}{sep}options=-csearch_path%3D{schema}&application_name={schema}"


def refuse_migrations(monkeypatch: pytest.MonkeyPatch, ours: Callable[[URL], bool]) -> None:
    """Fail a test that runs migrations (to an older revision, or down) on a database that
    was handed to it already migrated: such a test would pass without testing anything."""
    from alembic import command

    def guarded(name: str, original: Callable[..., None]) -> Callable[..., None]:
        def call(config: Any, revision: str, *args: Any, **kwargs: Any) -> None:
            engine = config.attributes.get("engine")
            current = name == "upgrade" and revision in ("head", head_revision())
            if engine is not None and ours(engine.url) and not current:
                pytest.fail(
                    f"alembic {name} to {revision} on a database handed out already migrated:"
                    " migration tests go in a module named test_migration*.py (or take"
                    " empty_db_url), where the databases start empty",
                    pytrace=False,
                )
            original(config, revision, *args, **kwargs)

        return call

    monkeypatch.setattr(command, "upgrade", guarded("upgrade", command.upgrade))
    monkeypatch.setattr(command, "downgrade", guarded("downgrade", command.downgrade))


# ---- SQLite -----------------------------------------------------------------------------------


def make_sqlite_template(folder: Path) -> Path:
    """A migrated SQLite file, closed (WAL checkpointed into the file) so it can be copied."""
    path = folder / "template.db"
    migrate(f"sqlite:///{path}")
    for suffix in ("-wal", "-shm"):
        leftover = path.with_name(path.name + suffix)
        if leftover.exists() and leftover.stat().st_size:
            raise AssertionError(f"{leftover} was not checkpointed: the copy would miss rows")
    return path


def copy_sqlite(template: Path, target: Path) -> str:
    """A private copy of the migrated template at `target`; its URL."""
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


# ---- PostgreSQL -------------------------------------------------------------------------------

# Everything in a schema that a test could change besides rows: relations, columns,
# constraints, indexes, types. A schema is handed out again only while this is unchanged.
SHAPE_SQL = """
SELECT md5(coalesce(string_agg(item, '|' ORDER BY item), '')) FROM (
  SELECT 'rel:' || c.relname || ':' || c.relkind::text AS item
    FROM pg_class c WHERE c.relnamespace = to_regnamespace(:s)
  UNION ALL
  SELECT 'col:' || c.relname || '.' || a.attname || ':' || format_type(a.atttypid, a.atttypmod)
         || ':' || a.attnotnull::text || ':' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE c.relnamespace = to_regnamespace(:s) AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT 'con:' || conname || ':' || pg_get_constraintdef(oid)
    FROM pg_constraint WHERE connamespace = to_regnamespace(:s)
  UNION ALL
  SELECT 'idx:' || indexdef FROM pg_indexes WHERE schemaname = :s
  UNION ALL
  SELECT 'typ:' || typname FROM pg_type WHERE typnamespace = to_regnamespace(:s)
) shape
"""
# Definitions name the schema (index definitions, defaults' sequences): masked, so that every
# schema migrated the same way has the same shape.
SHAPE_SQL = SHAPE_SQL.replace("string_agg(item,", "string_agg(replace(item, :s, '<schema>'),")

# A cheap stand-in for the shape (about 2 ms against 10): how many catalog rows describe the
# schema and the newest transaction that wrote one. DDL inserts, updates or deletes such rows
# (a new row version carries a newer xmin; a deletion lowers a count), so an unchanged
# fingerprint means an unchanged shape; a changed one (DDL, TRUNCATE) sends the schema
# through the full shape comparison above.
FINGERPRINT_SQL = """
WITH rel AS (SELECT oid, xmin FROM pg_class WHERE relnamespace = to_regnamespace(:s))
SELECT concat_ws('|',
  (SELECT count(*) || ':' || max(xmin::text::bigint) FROM rel),
  (SELECT count(*) || ':' || max(xmin::text::bigint) FROM pg_attribute
    WHERE attrelid IN (SELECT oid FROM rel)),
  (SELECT count(*) || ':' || max(xmin::text::bigint) FROM pg_attrdef
    WHERE adrelid IN (SELECT oid FROM rel)),
  (SELECT count(*) || ':' || max(xmin::text::bigint) FROM pg_index
    WHERE indrelid IN (SELECT oid FROM rel)),
  (SELECT count(*) || ':' || max(xmin::text::bigint) FROM pg_constraint
    WHERE connamespace = to_regnamespace(:s)),
  (SELECT count(*) || ':' || max(xmin::text::bigint) FROM pg_type
    WHERE typnamespace = to_regnamespace(:s)))
"""

# What ANALYZE, VACUUM and CREATE INDEX leave behind for the planner, which deleting rows
# does not undo: a schema whose tables were analyzed is not handed out again (a test of
# `refresh_statistics` must see a table as fresh as right after migrating).
PLANNER_SQL = """
SELECT c.relname, c.reltuples, c.relpages,
       (SELECT count(*) FROM pg_stats s WHERE s.schemaname = :s AND s.tablename = c.relname)
  FROM pg_class c WHERE c.relnamespace = to_regnamespace(:s) AND c.relkind = 'r'
 ORDER BY c.relname
"""

# Tables in an order that deletes children before parents (by foreign keys).
FK_SQL = """
SELECT child.relname, parent.relname
  FROM pg_constraint k
  JOIN pg_class child ON child.oid = k.conrelid
  JOIN pg_class parent ON parent.oid = k.confrelid
 WHERE k.contype = 'f' AND k.connamespace = to_regnamespace(:s)
"""


@dataclass
class _Baseline:
    """A schema as it is right after migrating: its shape, planner state and rows."""

    shape: str
    planner: list[tuple[object, ...]]
    delete_order: list[str]
    sequences: list[tuple[str, int]]
    rows: dict[str, list[dict[str, object]]]


@dataclass
class PostgresSchemas:
    """Migrated private schemas of this pytest process.

    `take()` gives a schema at the newest migration with no rows but those the migrations
    wrote; `give_back()` deletes the test's rows, restarts sequences and statistics counters
    and keeps the schema for the next test, or drops it when the test changed more than rows
    (DDL, planner statistics) or left locks behind."""

    base_url: str
    free: list[str] = field(default_factory=list)
    made: list[str] = field(default_factory=list)
    baseline: _Baseline | None = None
    # Per schema, the catalog fingerprint it had when its shape was last found the baseline's.
    checked: dict[str, str] = field(default_factory=dict)
    admin: Engine = field(init=False)

    def __post_init__(self) -> None:
        self.admin = create_engine(self.base_url, isolation_level="AUTOCOMMIT")
        self._drop_stale()

    def take(self) -> str:
        while self.free:
            schema = self.free.pop()
            if self._planner_unchanged(schema):
                return schema
            self.drop(schema)
        schema = f"{SCHEMA_PREFIX}{int(time.time())}_{uuid.uuid4().hex[:10]}"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        self.made.append(schema)
        migrate(schema_url(self.base_url, schema))
        if self.baseline is None:
            self.baseline = self._read_baseline(schema)
        return schema

    def give_back(self, schema: str) -> None:
        try:
            reusable = self._connections_closed(schema) and self._reset(schema)
        except Exception:
            reusable = False
        if reusable:
            self.free.append(schema)
        else:
            self.drop(schema)

    def drop(self, schema: str) -> None:
        with self.admin.connect() as conn:
            conn.execute(text("SET lock_timeout = '10s'"))
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        if schema in self.made:
            self.made.remove(schema)
        self.checked.pop(schema, None)

    def close(self) -> None:
        for schema in list(self.made):
            # A lock held past the end of the run: left to the next run's stale cleanup.
            with contextlib.suppress(Exception):
                self.drop(schema)
        self.admin.dispose()

    # ---- internals ----

    def _read_baseline(self, schema: str) -> _Baseline:
        engine = make_engine(schema_url(self.base_url, schema))
        try:
            with engine.connect() as conn:
                tables = [
                    r[0]
                    for r in conn.execute(
                        text("SELECT tablename FROM pg_tables WHERE schemaname = :s"),
                        {"s": schema},
                    )
                ]
                edges = [(c, p) for c, p in conn.execute(text(FK_SQL), {"s": schema}) if c != p]
                sequences = [
                    (str(name), int(start))
                    for name, start in conn.execute(
                        text(
                            "SELECT sequencename, start_value FROM pg_sequences"
                            " WHERE schemaname = :s"
                        ),
                        {"s": schema},
                    )
                ]
                rows: dict[str, list[dict[str, object]]] = {}
                for table in tables:
                    found = conn.execute(text(f'SELECT * FROM "{table}"')).mappings().all()
                    if found:
                        rows[table] = [dict(r) for r in found]
            # Read as _reset reads them: from a connection outside the schema (its
            # definitions then name the schema, which the shape masks).
            with self.admin.connect() as outside:
                return _Baseline(
                    shape=self._shape(outside, schema),
                    planner=self._planner(outside, schema),
                    delete_order=_children_first(tables, edges),
                    sequences=sequences,
                    rows=rows,
                )
        finally:
            engine.dispose()

    @staticmethod
    def _shape(conn: Connection, schema: str) -> str:
        return str(conn.execute(text(SHAPE_SQL), {"s": schema}).scalar_one())

    @staticmethod
    def _planner(conn: Connection, schema: str) -> list[tuple[object, ...]]:
        return [tuple(r) for r in conn.execute(text(PLANNER_SQL), {"s": schema})]

    def _planner_unchanged(self, schema: str) -> bool:
        """Still no planner statistics (autovacuum may have visited since the reset)."""
        assert self.baseline is not None
        with self.admin.connect() as conn:
            return self._planner(conn, schema) == self.baseline.planner

    def _connections_closed(self, schema: str) -> bool:
        """The test's connections have ended (waits a moment: a closed connection's server
        process ends just after, and reports its row counters as it goes). A connection still
        open (an engine never disposed) might write later: the schema is not reused."""
        deadline = time.monotonic() + CONNECTIONS_WAIT_S
        with self.admin.connect() as conn:
            while True:
                left = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE application_name = :s AND pid <> pg_backend_pid()"
                    ),
                    {"s": schema},
                ).scalar_one()
                if not left:
                    return True
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.005)

    def _reset(self, schema: str) -> bool:
        """Back to the baseline, or False when that cannot be promised."""
        base = self.baseline
        assert base is not None
        with self.admin.connect() as conn, conn.begin():
            # Locks left behind would make this wait: give up on the schema instead.
            conn.execute(text("SET LOCAL lock_timeout = '2s'"))
            if not self._shape_unchanged(conn, schema):
                return False
            # One round trip: rows deleted children first, sequences restarted (names are
            # ours, the schema's, or the migrations', tables' and sequences').
            statements = [f'DELETE FROM "{schema}"."{table}"' for table in base.delete_order]
            statements += [
                f'SELECT setval(\'"{schema}"."{name}"\', {start}, false)'
                for name, start in base.sequences
            ]
            conn.exec_driver_sql("; ".join(statements))
            for table, rows in base.rows.items():
                columns = list(rows[0])
                names = ", ".join(f'"{c}"' for c in columns)
                values = ", ".join(f":{c}" for c in columns)
                conn.execute(
                    text(f'INSERT INTO "{schema}"."{table}" ({names}) VALUES ({values})'), rows
                )
            # Counters `refresh_statistics` reads (rows changed since the last ANALYZE).
            conn.execute(
                text(
                    "SELECT pg_stat_reset_single_table_counters(c.oid) FROM pg_class c"
                    " WHERE c.relnamespace = to_regnamespace(:s) AND c.relkind = 'r'"
                ),
                {"s": schema},
            )
        return True

    def _shape_unchanged(self, conn: Connection, schema: str) -> bool:
        """The schema's shape is the baseline's: compared in full only when its catalog
        fingerprint moved since it was last compared (a test ran DDL, or it is new)."""
        assert self.baseline is not None
        fingerprint = str(conn.execute(text(FINGERPRINT_SQL), {"s": schema}).scalar_one())
        if self.checked.get(schema) == fingerprint:
            return True
        if self._shape(conn, schema) != self.baseline.shape:
            return False
        self.checked[schema] = fingerprint
        return True

    def _drop_stale(self) -> None:
        """Schemas of this naming whose run was killed more than a day ago."""
        cutoff = time.time() - STALE_AFTER_S
        with self.admin.connect() as conn:
            names = conn.execute(
                text("SELECT nspname FROM pg_namespace WHERE nspname LIKE :p"),
                {"p": SCHEMA_PREFIX.replace("_", r"\_") + "%"},
            ).scalars()
            for name in list(names):
                stamp = name.removeprefix(SCHEMA_PREFIX).split("_", 1)[0]
                if stamp.isdigit() and int(stamp) < cutoff:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))


def _children_first(tables: list[str], edges: list[tuple[str, str]]) -> list[str]:
    """`tables` ordered so that a table comes before every table it references."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(table: str, path: frozenset[str]) -> None:
        if table in seen or table in path:
            return
        for child, parent in edges:
            if parent == table:
                visit(child, path | {table})
        seen.add(table)
        order.append(table)

    for table in sorted(tables):
        visit(table, frozenset())
    return order
