"""the admin's console (issue 27): what a source's fetches found, and resends

- `source.format`: the format detected at the last fetch that parsed (rss, atom, …), so
  `sources list` shows it instead of `auto` forever; `source.last_success_at`: when a fetch
  last worked. Existing sources get their last fetch time where it worked.
- `delivery.resend_of`: a delivery that sends again the digest of an earlier one (same
  papers, same window, a new Message-ID). Planning stays idempotent per (subscriber,
  period) for first sends: the unique constraint becomes a unique index over the rows that
  are not resends, so a resend may share its period with the digest it repeats.

Revision ID: 0016
Revises: 0014
Create Date: 2026-12-06 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from digestd.core.models import UTCDateTime

revision: str = "0016"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIRST_SENDS = "resend_of IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("source", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("format", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True)
        )
        batch_op.add_column(sa.Column("last_success_at", UTCDateTime(), nullable=True))
    op.execute(
        "UPDATE source SET last_success_at = last_fetch_at "
        "WHERE last_status IN ('ok', 'partial', 'not_modified')"
    )
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resend_of", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_delivery_resend_of", "delivery", ["resend_of"], ["id"], ondelete="SET NULL"
        )
        batch_op.drop_constraint("uq_delivery_subscriber_period", type_="unique")
    op.create_index(
        "uq_delivery_subscriber_period",
        "delivery",
        ["subscriber_id", "period"],
        unique=True,
        sqlite_where=sa.text(FIRST_SENDS),
        postgresql_where=sa.text(FIRST_SENDS),
    )


def downgrade() -> None:
    # Resends go: the unique (subscriber, period) key cannot hold them.
    op.execute("DELETE FROM delivery WHERE resend_of IS NOT NULL")
    op.drop_index("uq_delivery_subscriber_period", table_name="delivery")
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_constraint("fk_delivery_resend_of", type_="foreignkey")
        batch_op.drop_column("resend_of")
        batch_op.create_unique_constraint(
            "uq_delivery_subscriber_period", ["subscriber_id", "period"]
        )
    with op.batch_alter_table("source", schema=None) as batch_op:
        batch_op.drop_column("last_success_at")
        batch_op.drop_column("format")
