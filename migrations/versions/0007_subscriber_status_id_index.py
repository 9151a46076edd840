"""subscriber: index (status, id) instead of status alone

Planning pages through the active subscribers in id order; (status, id) serves that as one
range scan whatever the planner's statistics say (see `models.Subscriber`).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 19:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.create_index("ix_subscriber_status_id", ["status", "id"], unique=False)
        batch_op.drop_index(batch_op.f("ix_subscriber_status"))


def downgrade() -> None:
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.create_index("ix_subscriber_status", ["status"], unique=False)
        batch_op.drop_index("ix_subscriber_status_id")
