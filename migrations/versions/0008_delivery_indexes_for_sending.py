"""delivery: index (subscriber_id, sent_at) instead of subscriber_id alone; delivery_entry:
no index on entry_id

The never-twice query reads a subscriber's deliveries sent after a window's start, a range
in the new index, instead of their whole history (see `deliveries.sent_entry_ids`).
Nothing reads delivery_entry by entry, and that index was half the cost of writing its
ten rows a message (see `models.DeliveryEntry`).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 23:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.create_index(
            "ix_delivery_subscriber_sent", ["subscriber_id", "sent_at"], unique=False
        )
        batch_op.drop_index(batch_op.f("ix_delivery_subscriber_id"))
    with op.batch_alter_table("delivery_entry", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_entry_entry")


def downgrade() -> None:
    with op.batch_alter_table("delivery_entry", schema=None) as batch_op:
        batch_op.create_index("ix_delivery_entry_entry", ["entry_id"], unique=False)
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.create_index("ix_delivery_subscriber_id", ["subscriber_id"], unique=False)
        batch_op.drop_index("ix_delivery_subscriber_sent")
