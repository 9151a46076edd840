"""Migration 0013: existing sources keep working as they were meant, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from digestd.core.db import alembic_config, make_engine, upgrade

BEFORE = "0011"


def test_local_files_keep_reading_this_machine_and_urls_become_public_only(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(engine, BEFORE)
        with engine.begin() as conn:
            for sid, url in ((1, "file:///srv/seeds/trending.json"), (2, "https://e.org/rss")):
                conn.execute(
                    text(
                        "INSERT INTO source (id, url, kind, name, enabled, created_at, failures,"
                        " last_counts) VALUES (:i, :u, 'auto', 'n', true, '2026-11-26 08:00:00',"
                        " 0, '{}')"
                    ),
                    {"i": sid, "u": url},
                )
        upgrade(engine, "0013")
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, allow_private FROM source ORDER BY id")).all()
        assert [(r[0], bool(r[1])) for r in rows] == [(1, True), (2, False)]
        assert "command_reply" in inspect(engine).get_table_names()
        command.downgrade(alembic_config(engine), BEFORE)
        columns = {c["name"] for c in inspect(engine).get_columns("source")}
        assert "allow_private" not in columns
        assert "command_reply" not in inspect(engine).get_table_names()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM source")).scalar() == 2
    finally:
        engine.dispose()
