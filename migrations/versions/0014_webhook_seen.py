"""webhook_seen: one-time values of provider webhooks already accepted (replays refused)

Mailgun tokens, Standard Webhooks ids, SNS MessageIds, SendGrid signatures and Postmark
record ids are each accepted once, across restarts and replicas. A new, empty table.

Revision ID: 0014
Revises: 0015 (evidence's, landed before; the chain stays linear)
Create Date: 2026-12-06 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import digestd.core.models

revision: str = "0014"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_seen",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("seen_at", digestd.core.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider", "key", name="uq_webhook_seen"),
    )
    with op.batch_alter_table("webhook_seen", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhook_seen_seen_at"), ["seen_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("webhook_seen", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_seen_seen_at"))
    op.drop_table("webhook_seen")
