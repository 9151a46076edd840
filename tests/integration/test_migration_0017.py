"""Migration 0017 (issue 26): subscribers keep their rows and get empty author lists; the
lists a reader sets survive, and a downgrade drops them."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import alembic_config, upgrade
from digestd.subscribers import manage
from digestd.subscribers.manage import ByEmail
from tests.integration.test_migrations import _down_revision

SUBSCRIBER = (
    "INSERT INTO subscriber (id, email, name, status, topics, categories, frequency,"
    " send_hour, send_weekday, timezone, format, max_items, created_at, bounce_count,"
    " token_version) VALUES (1, 'a@example.org', '', 'active', 'agents', '[\"cs.CL\"]',"
    " 'daily', 8, 0, 'UTC', 'html', 10, '2026-11-26 08:00:00', 0, 1)"
)


def test_existing_subscribers_follow_nobody_until_they_say_so(db_url: str) -> None:
    before = _down_revision("0017")
    ctx = AppContext(Settings(database_url=db_url, secret_key="k" * 32), actor="test")
    engine = ctx.engine
    try:
        upgrade(engine, before)
        with engine.begin() as conn:
            conn.execute(text(SUBSCRIBER))
        upgrade(engine)
        shown = manage.follow_authors(ctx, ByEmail("a@example.org"), ["LeCun, Yann"])
        assert shown.diff == {"follows": [[], ["LeCun, Yann"]]}
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT topics, follows, muted_authors FROM subscriber WHERE id = 1")
            ).one()
        assert row[0] == "agents"
        assert [str(v) for v in row[1:]] in (
            ['["LeCun, Yann"]', "[]"],  # SQLite hands JSON back as text here
            ["['LeCun, Yann']", "[]"],  # PostgreSQL as lists
        )
        command.downgrade(alembic_config(engine), before)
        columns = {c["name"] for c in inspect(engine).get_columns("subscriber")}
        assert not columns & {"follows", "muted_authors"} and "categories" in columns
        upgrade(engine)  # and up again, the subscriber still there
        with engine.connect() as conn:
            assert conn.execute(text("SELECT follows FROM subscriber")).scalar_one() in ("[]", [])
    finally:
        ctx.dispose()
