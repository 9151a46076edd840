"""source.allow_private; command_reply (hourly caps on replies to mail commands)

Feeds may reach only public addresses unless a source allows private ones: existing local
file sources keep working (they are this machine by definition, and an admin added them),
every http(s) source starts public-only. Replies to mail commands are counted per hour in
command_reply (keyed hashes, no addresses), which starts empty.

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import digestd.core.models

revision: str = "0013"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("source", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("allow_private", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.execute(
        sa.text("UPDATE source SET allow_private = :yes WHERE url LIKE 'file:%'").bindparams(
            yes=True
        )
    )
    op.create_table(
        "command_reply",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sent_at", digestd.core.models.UTCDateTime(), nullable=False),
        sa.Column("recipient", sa.String(length=32), nullable=False),
        sa.Column("sender", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("command_reply", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_command_reply_sent_at"), ["sent_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("command_reply", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_command_reply_sent_at"))
    op.drop_table("command_reply")
    with op.batch_alter_table("source", schema=None) as batch_op:
        batch_op.drop_column("allow_private")
