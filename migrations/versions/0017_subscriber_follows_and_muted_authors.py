"""subscriber: authors followed and muted (issue 26)

- `follows`: names of authors whose new papers lead the reader's digest, whatever their
  score, with the reason "by X, whom you follow".
- `muted_authors`: names of authors whose papers never enter the reader's digest.

Both are JSON lists of names as the reader wrote them (like `categories`), matched after
normalization (ranking/authors.py); existing subscribers get empty lists. op.add_column, not
a batch: on SQLite a batch rebuilds the table, and dropping the old one cascades to every
delivery and vote (see 0010).

Revision ID: 0017
Revises: 0012 (the head when this landed)
Create Date: 2026-12-06 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("follows", "muted_authors")


def upgrade() -> None:
    for column in COLUMNS:
        op.add_column(
            "subscriber",
            sa.Column(column, sa.JSON(), nullable=False, server_default=sa.text("'[]'")),
        )


def downgrade() -> None:
    for column in reversed(COLUMNS):
        op.drop_column("subscriber", column)
