"""subscriber: why mail stopped, suppression, consent, a link key, ids never reused

- `stopped_by` / `stopped_at`: why and when mail stopped (person, mail, complaint, admin,
  bounce), read from each subscriber's newest status event; `suppressed`: a bounce, or a
  complaint not lifted since (until now worked out from the JSON of the newest event).
- `consent_given_at` / `_by` / `_source` / `_ip`: the consent record. Existing subscribers
  get their creation time and who added them (the audit trail's `subscriber.added` actor).
- `link_key`: a random key per subscriber that every signed link is bound to.
- `address_mail`: each confirmation and command reply sent to an address, so that one daily
  cap counts them together (3 a day in all, as the README says).
- Ids are never given out twice: SQLite gets AUTOINCREMENT, PostgreSQL an identity column
  instead of its serial. SQLite cannot add AUTOINCREMENT to a table, and rebuilding it is
  not safe here: with foreign keys on (they cannot be turned off inside the migration's
  transaction), dropping the old table would delete every delivery, vote and inbound row by
  cascade. AUTOINCREMENT changes nothing in how rows are stored (the id is the rowid either
  way), so the table's definition is edited in place as SQLite documents for such changes
  (writable_schema, then a new schema_version), and its sequence starts above every id ever
  given: the largest id plus one per forgotten subscriber (a forgotten newest id was freed).

Revision ID: 0010
Revises: 0016 (after 0011, 0013, 0015, 0014 and 0016, which landed first)
Create Date: 2026-12-02 09:00:00
"""

import json
import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK = 1000
# The way of an unsubscribe (its event's detail) -> why mail stopped.
_WAYS = {"one-click": "person", "page": "person", "mail": "mail", "complaint": "complaint"}
_WAYS["admin"] = "admin"
COLUMNS = (
    "stopped_by",
    "stopped_at",
    "suppressed",
    "link_key",
    "consent_given_at",
    "consent_given_by",
    "consent_source",
    "consent_ip",
)


def upgrade() -> None:
    # op.add_column, never a batch: on SQLite a batch would rebuild the table for the
    # boolean's default, and dropping the old table cascades to every delivery and vote.
    op.add_column("subscriber", sa.Column("stopped_by", sa.String(length=16), nullable=True))
    op.add_column("subscriber", sa.Column("stopped_at", sa.DateTime(), nullable=True))
    op.add_column(
        "subscriber",
        sa.Column("suppressed", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "subscriber",
        sa.Column("link_key", sa.String(length=32), nullable=False, server_default=""),
    )
    op.add_column("subscriber", sa.Column("consent_given_at", sa.DateTime(), nullable=True))
    op.add_column("subscriber", sa.Column("consent_given_by", sa.String(length=16), nullable=True))
    op.add_column(
        "subscriber",
        sa.Column("consent_source", sa.String(length=300), nullable=False, server_default=""),
    )
    op.add_column("subscriber", sa.Column("consent_ip", sa.String(length=64), nullable=True))
    op.create_table(
        "address_mail",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_address_mail_address_sent", "address_mail", ["address", "sent_at"], unique=False
    )
    conn = op.get_bind()
    sqlite = conn.dialect.name == "sqlite"
    # A random link key per row (72 bits as hex would do; 96 here), made by the database.
    random_key = (
        "lower(hex(randomblob(12)))"
        if sqlite
        else "substr(md5(random()::text || id::text || clock_timestamp()::text), 1, 24)"
    )
    conn.execute(sa.text(f"UPDATE subscriber SET link_key = {random_key}"))
    _consent(conn)
    _stopped(conn)
    if sqlite:
        _sqlite_autoincrement(conn)
    else:
        _postgres_identity(conn)


def _consent(conn: sa.Connection) -> None:
    """Who added each subscriber, from its first `subscriber.added` event."""
    added_by = (
        "(SELECT e.actor FROM event e WHERE e.subscriber_id = subscriber.id"
        " AND e.action = 'subscriber.added' ORDER BY e.id LIMIT 1)"
    )
    conn.execute(
        sa.text(
            "UPDATE subscriber SET consent_given_at = created_at,"
            f" consent_given_by = CASE WHEN {added_by} = 'web' THEN 'web'"
            f" WHEN {added_by} IN ('mail', 'inbound') THEN 'mail'"
            f" WHEN {added_by} LIKE '%import%' OR {added_by} = 'demo' THEN 'import'"
            " ELSE 'admin' END,"
            f" consent_source = COALESCE('added by ' || {added_by}, 'before consent records')"
        )
    )


def _stopped(conn: sa.Connection) -> None:
    """stopped_by, stopped_at and suppressed of every subscriber that gets no mail, from its
    newest status event (keyset pages of CHUNK subscribers, one event query each)."""
    after = 0
    while True:
        subs = conn.execute(
            sa.text(
                "SELECT id, status, unsubscribed_at FROM subscriber"
                " WHERE status IN ('unsubscribed', 'suspended', 'bounced') AND id > :after"
                " ORDER BY id LIMIT :n"
            ),
            {"after": after, "n": CHUNK},
        ).all()
        if not subs:
            return
        after = subs[-1][0]
        events = conn.execute(
            sa.text(
                "SELECT subscriber_id, action, actor, detail, created_at FROM event"
                " WHERE subscriber_id IN :ids AND action IN"
                " ('subscriber.status', 'subscriber.suppression_lifted') ORDER BY id"
            ).bindparams(sa.bindparam("ids", expanding=True)),
            {"ids": [s[0] for s in subs]},
        ).all()
        newest: dict[int, tuple[str, str, dict, object]] = {}
        lifted: set[int] = set()
        for sub_id, action, actor, detail, created_at in events:
            if isinstance(detail, str):  # SQLite's JSON comes back as text here
                detail = json.loads(detail or "{}")
            if action == "subscriber.suppression_lifted":
                lifted.add(sub_id)
                continue
            newest[sub_id] = (action, actor or "", detail or {}, created_at)
            lifted.discard(sub_id)  # a later status change makes an earlier lift moot
        rows = []
        for sub_id, status, unsubscribed_at in subs:
            _, actor, detail, at = newest.get(sub_id, ("", "", {}, None))
            suppressed = False
            if status == "bounced":
                by = "bounce"
                suppressed = True
            elif status == "unsubscribed":
                by = _WAYS.get(str(detail.get("way") or detail.get("reason") or ""), "person")
                suppressed = by == "complaint" and sub_id not in lifted
                at = unsubscribed_at or at
            else:  # suspended: paused on the page (actor "web") or by an admin
                by = "person" if actor == "web" else "admin"
            rows.append({"i": sub_id, "by": by, "at": at, "sup": suppressed})
        conn.execute(
            sa.text(
                "UPDATE subscriber SET stopped_by = :by, stopped_at = :at, suppressed = :sup"
                " WHERE id = :i"
            ),
            rows,
        )


_SQLITE_PK = re.compile(r"\bid INTEGER NOT NULL,")
_SQLITE_PK_CONSTRAINT = re.compile(r",\s*PRIMARY KEY \(id\)")


def _sqlite_autoincrement(conn: sa.Connection) -> None:
    sql = conn.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'subscriber'")
    ).scalar_one()
    if "AUTOINCREMENT" in sql.upper():
        return
    if not _SQLITE_PK.search(sql) or not _SQLITE_PK_CONSTRAINT.search(sql):
        raise RuntimeError(
            "subscriber table not as digestd created it; cannot add AUTOINCREMENT: " + sql
        )
    new = _SQLITE_PK.sub("id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,", sql, count=1)
    new = _SQLITE_PK_CONSTRAINT.sub("", new, count=1)
    # sqlite_sequence exists once any AUTOINCREMENT table was created.
    conn.exec_driver_sql(
        "CREATE TABLE _digestd_make_sequence (id INTEGER PRIMARY KEY AUTOINCREMENT)"
    )
    conn.exec_driver_sql("DROP TABLE _digestd_make_sequence")
    version = conn.exec_driver_sql("PRAGMA schema_version").scalar_one()
    conn.exec_driver_sql("PRAGMA writable_schema = ON")
    conn.execute(
        sa.text("UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = 'subscriber'"),
        {"sql": new},
    )
    conn.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    conn.exec_driver_sql("PRAGMA writable_schema = OFF")
    floor = _highest_id_given(conn)
    conn.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = 'subscriber'"))
    conn.execute(
        sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES ('subscriber', :seq)"),
        {"seq": floor},
    )


def _highest_id_given(conn: sa.Connection) -> int:
    """An id above every id ever given out: the largest one now, plus one per forgotten
    subscriber (each forget freed at most one id, perhaps the newest)."""
    largest = conn.execute(sa.text("SELECT COALESCE(MAX(id), 0) FROM subscriber")).scalar_one()
    forgotten = conn.execute(
        sa.text("SELECT COUNT(*) FROM event WHERE action = 'subscriber.forgotten'")
    ).scalar_one()
    return int(largest) + int(forgotten)


def _postgres_identity(conn: sa.Connection) -> None:
    sequence = conn.execute(sa.text("SELECT pg_get_serial_sequence('subscriber', 'id')")).scalar()
    start = _highest_id_given(conn) + 1
    if sequence:
        # A serial's sequence never hands an id out twice; the identity carries on after it.
        last, called = conn.execute(sa.text(f"SELECT last_value, is_called FROM {sequence}")).one()
        start = max(start, int(last) + (1 if called else 0))
        conn.execute(sa.text("ALTER TABLE subscriber ALTER COLUMN id DROP DEFAULT"))
        conn.execute(sa.text(f"DROP SEQUENCE {sequence}"))
    conn.execute(
        sa.text(
            "ALTER TABLE subscriber ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY"
            f" (START WITH {int(start)})"
        )
    )


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        start = conn.execute(
            sa.text("SELECT COALESCE(MAX(id), 0) + 1 FROM subscriber")
        ).scalar_one()
        conn.execute(sa.text("ALTER TABLE subscriber ALTER COLUMN id DROP IDENTITY"))
        conn.execute(
            sa.text(
                f"CREATE SEQUENCE subscriber_id_seq OWNED BY subscriber.id START WITH {int(start)}"
            )
        )
        conn.execute(
            sa.text(
                "ALTER TABLE subscriber ALTER COLUMN id SET DEFAULT nextval('subscriber_id_seq')"
            )
        )
    # SQLite keeps AUTOINCREMENT: harmless to the older code, and undoing it would need the
    # same in-place edit for nothing gained. Columns go with ALTER TABLE … DROP COLUMN (not a
    # batch rebuild, whose DROP TABLE would cascade to deliveries).
    for column in reversed(COLUMNS):
        op.drop_column("subscriber", column)
    op.drop_index("ix_address_mail_address_sent", table_name="address_mail")
    op.drop_table("address_mail")
