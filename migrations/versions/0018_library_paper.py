"""library_paper: the papers of a reader's own library (issue 26)

`subscribers update --import-library FILE` and the preference page's upload store each
paper's title and abstract (and its arXiv id or DOI, and the entry when digestd has it):
they describe the reader like liked papers do. A new, empty table.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import digestd.core.models

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "library_paper",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=True),
        sa.Column("ref", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("abstract", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", digestd.core.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscriber.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["entry_id"], ["entry.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("library_paper", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_library_paper_subscriber_id"), ["subscriber_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("library_paper", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_library_paper_subscriber_id"))
    op.drop_table("library_paper")
