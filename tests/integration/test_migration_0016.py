"""Migration 0016 (issue 27): a source's detected format and last success; resends share
their period with the digest they repeat, while planning stays one first send a period."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from digestd.core.db import alembic_config, make_engine, session_scope, upgrade
from digestd.delivery.deliveries import NewDelivery, plan, plan_resend
from tests.integration.test_migrations import _down_revision

SUBSCRIBER = (
    "INSERT INTO subscriber (id, email, name, status, topics, categories, frequency,"
    " send_hour, send_weekday, timezone, format, max_items, created_at, bounce_count,"
    " token_version) VALUES (1, 'a@example.org', '', 'active', '', '[]', 'daily', 8, 0,"
    " 'UTC', 'html', 10, '2026-11-26 08:00:00', 0, 1)"
)
DELIVERY = (
    "INSERT INTO delivery (subscriber_id, period, status, attempts, message_id,"
    " entry_count, entry_ids, created_at, reasons) VALUES (1, '2026-11-26', 'sent', 1,"
    " '<a@example.org>', 0, '', '2026-11-26 08:00:00', '')"
)


def test_sources_keep_their_last_success_and_resends_go_on_downgrade(db_url: str) -> None:
    before = _down_revision("0016")
    engine = make_engine(db_url)
    try:
        upgrade(engine, before)
        with engine.begin() as conn:
            for ident, status in ((1, "ok"), (2, "error"), (3, None)):
                conn.execute(
                    text(
                        "INSERT INTO source (id, url, kind, name, enabled, created_at,"
                        " last_fetch_at, last_status, last_counts, failures, allow_private)"
                        " VALUES (:i, :u, 'auto', '', true, '2026-11-26 08:00:00',"
                        " '2026-11-27 09:30:00', :s, '{}', 0, false)"
                    ),
                    {"i": ident, "u": f"https://feeds.example.org/{ident}", "s": status},
                )
            conn.execute(text(SUBSCRIBER))
            conn.execute(text(DELIVERY))
        upgrade(engine)
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT id, format, last_success_at FROM source ORDER BY id")
            ).all()
        assert [(r[0], r[1], r[2] is not None) for r in rows] == [
            (1, None, True),
            (2, None, False),
            (3, None, False),
        ]
        now = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
        with session_scope(engine) as session:
            # A resend shares the period; planning the period again adds nothing.
            assert plan_resend(session, 1, now=now, domain="example.org") == 2
            again = NewDelivery(1, "2026-11-26", now, now, now, "<b@example.org>")
            assert plan(session, [again], now=now) == 0
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(DELIVERY.replace("(1, 1,", "(3, 1,").replace("<a@", "<c@")))
        command.downgrade(alembic_config(engine), before)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id FROM delivery")).scalars().all() == [1]
        columns = {c["name"] for c in inspect(engine).get_columns("source")}
        assert not columns & {"format", "last_success_at"}
        upgrade(engine)  # and up again, with the first send still there
    finally:
        engine.dispose()
