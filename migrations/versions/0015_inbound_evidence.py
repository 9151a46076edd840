"""inbound.evidence: what tied a returned message to a message we sent (issue 23)

A bounce or a complaint now changes a subscriber only with evidence: a VERP token, one of
our Message-IDs for that address, a signed mailto: token, or a verified provider event.
The record says which ("" when there was none, and then nothing changed). Rows recorded
before this revision were matched without the check (a bare address was enough): they are
marked "unchecked" where they changed a subscriber, so an admin can review them.

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-06 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0015"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbound", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "evidence",
                sqlmodel.sql.sqltypes.AutoString(length=16),
                nullable=False,
                server_default="",
            )
        )
    op.execute(
        "UPDATE inbound SET evidence = 'unchecked' WHERE subscriber_id IS NOT NULL "
        "AND kind IN ('bounce', 'complaint', 'unsubscribe')"
    )


def downgrade() -> None:
    with op.batch_alter_table("inbound", schema=None) as batch_op:
        batch_op.drop_column("evidence")
