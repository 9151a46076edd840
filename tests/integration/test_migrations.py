"""Models and migrations agree, on SQLite and on PostgreSQL."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlmodel import SQLModel, select

import digestd.core.models  # noqa: F401
from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import (
    alembic_config,
    at_head,
    current_revision,
    head_revision,
    make_engine,
    session_scope,
    upgrade,
)
from digestd.core.models import Entry
from digestd.delivery.deliveries import entry_ids, sent_entry_ids

# The database fixtures hand out empty databases in this module (its name starts with
# test_migration, see tests/conftest.py): the migrations themselves are under test here.


def test_upgrade_then_autogenerate_finds_no_difference(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}),
                SQLModel.metadata,
            )
        assert diff == [], f"models and migrations differ: {diff}"
        tables = set(inspect(engine).get_table_names())
        assert {"source", "entry", "subscriber", "delivery", "event"} <= tables
    finally:
        engine.dispose()


def test_upgrade_is_idempotent(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        first = current_revision(engine)
        upgrade(engine)
        assert current_revision(engine) == first is not None
    finally:
        engine.dispose()


def test_migrate_upgrades_only_a_schema_that_is_not_current(db_url: str) -> None:
    """`AppContext.migrate()` (every command's first step) reads alembic_version and runs
    Alembic only when the schema is behind: empty, or one migration short."""
    ctx = AppContext(Settings(database_url=db_url), actor="test")
    try:
        assert not at_head(ctx.engine)  # no alembic_version table yet
        ctx.migrate()
        head = head_revision()
        assert head is not None and current_revision(ctx.engine) == head
        assert at_head(ctx.engine)
        command.downgrade(alembic_config(ctx.engine), "-1")
        assert not at_head(ctx.engine)
        ctx.migrate()
        assert current_revision(ctx.engine) == head and at_head(ctx.engine)
    finally:
        ctx.dispose()


def test_papers_carried_move_to_the_delivery_row_and_back(db_url: str) -> None:
    """0009 copies delivery_entry rows into delivery.entry_ids in rank order (what the
    never-twice record and "View in browser" read), and its downgrade rebuilds the rows of
    the entries that exist."""
    engine = make_engine(db_url)
    try:
        upgrade(engine, "0008")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO subscriber (id, email, name, status, topics, categories,"
                    " frequency, send_hour, send_weekday, timezone, format, max_items,"
                    " created_at, bounce_count, token_version) VALUES (1, 'a@example.org', '',"
                    " 'active', '', '[]', 'daily', 8, 0, 'UTC', 'html', 10,"
                    " '2026-11-26 08:00:00', 0, 1)"
                )
            )
            for i in (1, 2, 3):
                conn.execute(
                    text(
                        "INSERT INTO entry (id, canonical_key, url, title, summary, summary_html,"
                        " authors, categories, keywords, published_at, ingested_at, upvotes,"
                        " comments, version) VALUES (:i, :k, '', :t, '', '', '[]', '[]', '[]',"
                        " '2026-11-26 07:00:00', '2026-11-26 07:00:00', 0, 0, 1)"
                    ),
                    {"i": i, "k": f"k{i}", "t": f"paper {i}"},
                )
            conn.execute(
                text(
                    "INSERT INTO delivery (id, subscriber_id, period, status, attempts,"
                    " message_id, entry_count, created_at, sent_at) VALUES (7, 1, '2026-11-26',"
                    " 'sent', 1, '<m@x>', 3, '2026-11-26 08:00:00', '2026-11-26 08:00:01')"
                )
            )
            # Inserted out of rank order: the copy follows rank, not insertion.
            for entry_id, rank in ((2, 1), (3, 0), (1, 2)):
                conn.execute(
                    text("INSERT INTO delivery_entry VALUES (7, :e, :r)"),
                    {"e": entry_id, "r": rank},
                )
        upgrade(engine)
        with session_scope(engine) as s:
            assert entry_ids(s, 7) == [3, 2, 1]
            assert sent_entry_ids(s, [1]) == {1: frozenset({1, 2, 3})}
        # An id whose entry was deleted by hand is left out, not a broken foreign key.
        with engine.begin() as conn:
            conn.execute(text("UPDATE delivery SET entry_ids = '3,2,999,1' WHERE id = 7"))
        command.downgrade(alembic_config(engine), "0008")
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT entry_id, rank FROM delivery_entry ORDER BY rank")
            ).all()
        assert [tuple(r) for r in rows] == [(3, 0), (2, 1), (1, 3)]  # order kept, 999 left out
    finally:
        engine.dispose()


def test_failures_become_fields_once_and_the_columns_go_on_downgrade(db_url: str) -> None:
    """0011 reads the failures of existing rows once (what the code wrote into `error`) into
    the new fields, as the stats counted them before; its downgrade drops the columns."""
    engine = make_engine(db_url)
    try:
        upgrade(engine, "0009")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO subscriber (id, email, name, status, topics, categories,"
                    " frequency, send_hour, send_weekday, timezone, format, max_items,"
                    " created_at, bounce_count, token_version) VALUES (1, 'a@example.org', '',"
                    " 'active', '', '[]', 'daily', 8, 0, 'UTC', 'html', 10,"
                    " '2026-11-26 08:00:00', 0, 1)"
                )
            )
            for i, (status, error) in enumerate(
                (
                    ("failed", "550 5.1.1 <a@example.org>: user unknown"),
                    ("retry", "451 4.3.0 try later"),
                    ("failed", "gave up after 8 attempts: 452 4.2.2 mailbox full"),
                    ("retry", "SMTP 127.0.0.1:25: Connection refused"),
                    ("retry", "render failed: unexpected '}'"),
                    ("skipped", "empty digest: no new papers matched in this window"),
                    ("sent", None),
                ),
                start=1,
            ):
                conn.execute(
                    text(
                        "INSERT INTO delivery (id, subscriber_id, period, status, attempts,"
                        " message_id, entry_count, entry_ids, created_at, error) VALUES (:i, 1,"
                        " :p, :s, 1, :m, 0, '', '2026-11-26 08:00:00', :e)"
                    ),
                    {"i": i, "p": f"2026-11-{i:02d}", "s": status, "m": f"<{i}@x>", "e": error},
                )
        upgrade(engine)
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT smtp_code, enhanced_status, severity, reasons FROM delivery ORDER BY id"
                )
            ).all()
        assert [tuple(r) for r in rows] == [
            (550, "5.1.1", "hard", ""),
            (451, "4.3.0", "soft", ""),
            (452, "4.2.2", "soft", ""),
            (None, None, "ours", ""),
            (None, None, "ours", ""),
            (None, None, None, ""),
            (None, None, None, ""),
        ]
        command.downgrade(alembic_config(engine), "0009")
        columns = {c["name"] for c in inspect(engine).get_columns("delivery")}
        assert not columns & {"smtp_code", "enhanced_status", "severity", "reasons"}
        assert "error" in columns
    finally:
        engine.dispose()


def test_inbound_rows_recorded_before_evidence_was_checked_are_marked(db_url: str) -> None:
    """0015 adds inbound.evidence; rows that changed a subscriber before it (a bare address
    was enough then) are marked "unchecked" for review, the rest are left empty."""
    before = _down_revision("0015")
    engine = make_engine(db_url)
    try:
        upgrade(engine, before)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO subscriber (id, email, name, status, topics, categories,"
                    " frequency, send_hour, send_weekday, timezone, format, max_items,"
                    " created_at, bounce_count, token_version) VALUES (1, 'a@example.org', '',"
                    " 'bounced', '', '[]', 'daily', 8, 0, 'UTC', 'html', 10,"
                    " '2026-11-26 08:00:00', 0, 1)"
                )
            )
            for ident, kind, sub in ((1, "bounce", 1), (2, "bounce", None), (3, "auto_reply", 1)):
                conn.execute(
                    text(
                        "INSERT INTO inbound (id, received_at, kind, source, subscriber_id,"
                        " address, status_code, severity, reason, summary, effect, message_id,"
                        " size, recipients, headers) VALUES (:i, '2026-11-27 08:00:00', :k, '',"
                        " :s, 'a@example.org', '', '', '', '', '', '', 0, '[]', '[]')"
                    ),
                    {"i": ident, "k": kind, "s": sub},
                )
        upgrade(engine)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, evidence FROM inbound ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [(1, "unchecked"), (2, ""), (3, "")]
        command.downgrade(alembic_config(engine), before)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM inbound")).scalar_one() == 3
    finally:
        engine.dispose()


def test_papers_get_their_listing_day_and_old_ones_are_not_new(db_url: str) -> None:
    """0012: a paper is listed when it was published (or when first seen, if that came
    first); one published over 7 days before it was first seen is not recent (a back
    catalogue, never mailed as new). Its downgrade drops both columns, rows intact."""
    before = _down_revision("0012")
    engine = make_engine(db_url)
    try:
        upgrade(engine, before)
        with engine.begin() as conn:
            for ident, published, ingested in (
                (1, "2026-11-25 09:00:00", "2026-11-26 08:00:00"),  # a day late: new
                (2, "2026-10-01 09:00:00", "2026-11-26 08:00:00"),  # back catalogue
                (3, "2026-11-27 09:00:00", "2026-11-26 08:00:00"),  # dated in the future
            ):
                conn.execute(
                    text(
                        "INSERT INTO entry (id, canonical_key, version, url, title, authors,"
                        " summary, summary_html, categories, keywords, published_at,"
                        " ingested_at, upvotes, comments) VALUES (:i, :k, 1, '', 't', '[]', '',"
                        " '', '[]', '[]', :p, :g, 0, 0)"
                    ),
                    {"i": ident, "k": f"k{ident}", "p": published, "g": ingested},
                )
        upgrade(engine)
        with session_scope(engine) as s:
            rows = {e.id: (e.listed_at.isoformat(), e.recent) for e in s.exec(select(Entry))}
        assert rows == {
            1: ("2026-11-25T09:00:00+00:00", True),
            2: ("2026-10-01T09:00:00+00:00", False),
            3: ("2026-11-26T08:00:00+00:00", True),
        }
        command.downgrade(alembic_config(engine), before)
        columns = {c["name"] for c in inspect(engine).get_columns("entry")}
        assert not columns & {"listed_at", "recent"}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM entry")).scalar_one() == 3
    finally:
        engine.dispose()


def _down_revision(revision: str) -> str:
    """The revision a migration follows (re-pointed when others land before it)."""
    engine = make_engine("sqlite://")
    try:
        script = ScriptDirectory.from_config(alembic_config(engine)).get_revision(revision)
    finally:
        engine.dispose()
    assert script is not None and isinstance(script.down_revision, str)
    return script.down_revision


def _subscriber_sql(sub_id: int, email: str, status: str, unsubscribed: str | None = None) -> str:
    return (
        "INSERT INTO subscriber (id, email, name, status, topics, categories, frequency,"
        " send_hour, send_weekday, timezone, format, max_items, created_at, unsubscribed_at,"
        f" bounce_count, token_version) VALUES ({sub_id}, '{email}', '', '{status}', '', '[]',"
        " 'daily', 8, 0, 'UTC', 'html', 10, '2026-11-20 08:00:00',"
        f" {repr(unsubscribed) if unsubscribed else 'NULL'}, 0, 1)"
    )


def _event_sql(sub_id: int | None, action: str, actor: str, detail: str) -> str:
    return (
        "INSERT INTO event (subscriber_id, action, actor, detail, created_at) VALUES"
        f" ({'NULL' if sub_id is None else sub_id}, '{action}', '{actor}', '{detail}',"
        " '2026-11-21 08:00:00')"
    )


def test_0010_keeps_why_mail_stopped_consent_and_never_reuses_ids(db_url: str) -> None:
    """Existing subscribers get why mail stopped and suppression from their newest status
    event, a consent record from who added them, a link key each; their deliveries stay;
    and after the upgrade no id is given out twice (not even a forgotten newest one)."""
    engine = make_engine(db_url)
    try:
        upgrade(engine, "0009")
        with engine.begin() as conn:
            rows = [
                (1, "web@example.org", "active", None),
                (2, "clicked@example.org", "unsubscribed", "2026-11-22 09:00:00"),
                (3, "spam@example.org", "unsubscribed", "2026-11-22 09:00:00"),
                (4, "lifted@example.org", "unsubscribed", "2026-11-22 09:00:00"),
                (5, "bad@example.org", "bounced", None),
                (6, "paused@example.org", "suspended", None),
            ]
            for row in rows:
                conn.execute(text(_subscriber_sql(*row)))
            conn.execute(text(_event_sql(1, "subscriber.added", "web", '{"status": "pending"}')))
            conn.execute(text(_event_sql(2, "subscriber.added", "cli:subscribers import", "{}")))
            for sub_id, way in ((2, "one-click"), (3, "complaint"), (4, "complaint")):
                detail = f'{{"from": "active", "to": "unsubscribed", "way": "{way}"}}'
                conn.execute(text(_event_sql(sub_id, "subscriber.status", "inbound", detail)))
            conn.execute(text(_event_sql(4, "subscriber.suppression_lifted", "cli", "{}")))
            conn.execute(text(_event_sql(6, "subscriber.status", "web", '{"to": "suspended"}')))
            # subscriber 7 was the newest and was forgotten: its id was freed
            conn.execute(text(_event_sql(None, "subscriber.forgotten", "cli", "{}")))
            conn.execute(
                text(
                    "INSERT INTO delivery (id, subscriber_id, period, status, attempts,"
                    " message_id, entry_count, created_at) VALUES (7, 5, '2026-11-26',"
                    " 'failed', 1, '<m@x>', 0, '2026-11-26 08:00:00')"
                )
            )
        upgrade(engine)
        with engine.begin() as conn:
            got = {
                r.id: r
                for r in conn.execute(
                    text(
                        "SELECT id, stopped_by, suppressed, link_key, consent_given_by,"
                        " consent_given_at FROM subscriber"
                    )
                )
            }
            assert {i: (r.stopped_by, bool(r.suppressed)) for i, r in got.items()} == {
                1: (None, False),
                2: ("person", False),
                3: ("complaint", True),
                4: ("complaint", False),  # lifted since
                5: ("bounce", True),
                6: ("person", False),  # paused on the page
            }
            assert got[1].consent_given_by == "web" and got[2].consent_given_by == "import"
            assert got[6].consent_given_by == "admin" and got[1].consent_given_at is not None
            keys = [r.link_key for r in got.values()]
            assert all(len(k) >= 12 for k in keys) and len(set(keys)) == len(keys)
            assert conn.execute(text("SELECT count(*) FROM delivery")).scalar_one() == 1
            # forget the newest; the next subscriber gets neither its id nor the freed 7
            conn.execute(text("DELETE FROM subscriber WHERE id = 6"))
            conn.execute(
                text(
                    "INSERT INTO subscriber (email, name, status, topics, categories,"
                    " frequency, send_hour, send_weekday, timezone, format, max_items,"
                    " created_at, bounce_count, token_version) VALUES ('new@example.org',"
                    " '', 'pending', '', '[]', 'daily', 8, 0, 'UTC', 'html', 10,"
                    " '2026-11-27 08:00:00', 0, 1)"
                )
            )
            new_id = conn.execute(
                text("SELECT id FROM subscriber WHERE email = 'new@example.org'")
            ).scalar_one()
            assert new_id == 8
        command.downgrade(alembic_config(engine), "0009")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM subscriber")).scalar_one() == 6
            assert conn.execute(text("SELECT count(*) FROM delivery")).scalar_one() == 1
        upgrade(engine)  # and up again
    finally:
        engine.dispose()
