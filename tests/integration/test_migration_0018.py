"""Migration 0018 (issue 26): an existing subscriber can import a library into the new
table; a downgrade drops it and leaves the subscriber."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import alembic_config, upgrade
from digestd.subscribers import library
from digestd.subscribers.manage import ByEmail
from tests.integration.test_migration_0017 import SUBSCRIBER
from tests.integration.test_migrations import _down_revision

BIBTEX = b"@article{k, title={Toy Models of Superposition}, abstract={Features in neurons.}}"


def test_an_existing_subscriber_imports_a_library_and_a_downgrade_drops_it(db_url: str) -> None:
    before = _down_revision("0018")
    ctx = AppContext(Settings(database_url=db_url, secret_key="k" * 32), actor="test")
    engine = ctx.engine
    try:
        upgrade(engine, before)
        with engine.begin() as conn:
            conn.execute(text(SUBSCRIBER))
        upgrade(engine)
        done = library.import_library(ctx, ByEmail("a@example.org"), BIBTEX)
        assert done.papers == 1
        with engine.connect() as conn:
            row = conn.execute(text("SELECT subscriber_id, title FROM library_paper")).one()
        assert tuple(row) == (1, "Toy Models of Superposition")
        command.downgrade(alembic_config(engine), before)
        assert "library_paper" not in inspect(engine).get_table_names()
        with engine.connect() as conn:
            email = conn.execute(text("SELECT email FROM subscriber")).scalar_one()
        assert email == "a@example.org"
        upgrade(engine)  # and up again, empty
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM library_paper")).scalar_one() == 0
    finally:
        ctx.dispose()
