"""delivery.entry_ids: the papers a delivery carried, as a column instead of delivery_entry rows

A sent digest's papers (ids in rank order, comma-separated) now live on its delivery row:
recording an outcome is one UPDATE instead of that UPDATE plus ten inserted rows with their
primary-key and foreign-key checks, a tenth of the sending process's work
(benchmarks/README.md). Nothing read delivery_entry by paper. Existing rows are copied over
in rank order, then the table is dropped; the downgrade rebuilds it from the column.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 06:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COPY_CHUNK = 5000  # deliveries (upgrade) or rows (downgrade) written per executemany


def upgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "entry_ids", sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default=""
            )
        )
    conn = op.get_bind()
    # A server-side cursor on PostgreSQL (SQLite's driver steps through rows anyway).
    rows = conn.execute(
        sa.text(
            "SELECT delivery_id, entry_id FROM delivery_entry ORDER BY delivery_id, rank"
        ).execution_options(stream_results=True)
    )
    update = sa.text("UPDATE delivery SET entry_ids = :ids WHERE id = :id")
    pending: list[dict[str, object]] = []
    current: int | None = None
    ids: list[str] = []
    # Streamed in delivery order: memory stays bounded by one chunk, whatever the history.
    for delivery_id, entry_id in rows:
        if delivery_id != current:
            if current is not None:
                pending.append({"id": current, "ids": ",".join(ids)})
            current, ids = delivery_id, []
        ids.append(str(entry_id))
        if len(pending) >= COPY_CHUNK:
            conn.execute(update, pending)
            pending = []
    if current is not None:
        pending.append({"id": current, "ids": ",".join(ids)})
    if pending:
        conn.execute(update, pending)
    op.drop_table("delivery_entry")


def downgrade() -> None:
    op.create_table(
        "delivery_entry",
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["delivery_id"], ["delivery.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["entry_id"], ["entry.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("delivery_id", "entry_id"),
    )
    conn = op.get_bind()
    rows = conn.execute(
        sa.text("SELECT id, entry_ids FROM delivery WHERE entry_ids <> ''").execution_options(
            stream_results=True
        )
    )
    insert = sa.text("INSERT INTO delivery_entry (delivery_id, entry_id, rank) VALUES (:d, :e, :r)")
    pending: list[tuple[int, int, int]] = []
    for delivery_id, text in rows:
        pending.extend((delivery_id, int(e), rank) for rank, e in enumerate(text.split(",")))
        if len(pending) >= COPY_CHUNK:
            _insert_existing(conn, insert, pending)
            pending = []
    if pending:
        _insert_existing(conn, insert, pending)
    # Not batch mode: on SQLite it would rebuild `delivery`, and dropping the old table
    # cascades to the delivery_entry rows just written. ALTER TABLE … DROP COLUMN needs
    # SQLite 3.35 or newer.
    op.drop_column("delivery", "entry_ids")


def _insert_existing(
    conn: sa.Connection, insert: sa.TextClause, rows: list[tuple[int, int, int]]
) -> None:
    """Insert (delivery, entry, rank) rows whose entry still exists: the old table's foreign
    key required it, and an entry deleted by hand may still be named in the column."""
    existing = set(
        conn.execute(
            sa.text("SELECT id FROM entry WHERE id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"ids": sorted({e for _, e, _ in rows})},
        ).scalars()
    )
    keep = [{"d": d, "e": e, "r": r} for d, e, r in rows if e in existing]
    if keep:
        conn.execute(insert, keep)
