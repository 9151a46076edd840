"""entry: when a paper became news (listed_at) and whether it was new when first seen (recent)

Trending means new (issue 26): the public pages and feeds place a paper on the day it was
published (or first listed on Hugging Face Daily Papers), not on the day a source was first
fetched, and only papers published at most DIGESTD_PAPER_MAX_AGE_DAYS (7 by default) before
digestd first saw them enter digests. Existing rows: listed_at is the publication time, or
the ingestion time when that came first (a clock error upstream); recent is whether the
publication came at most 7 days before the ingestion. Downgrade drops both columns.

Revision ID: 0012
Revises: 0010 (the head when this landed; the chain stays linear)
Create Date: 2026-12-06 20:00:00
"""

from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa
from alembic import op

import digestd.core.models

revision: str = "0012"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MAX_AGE = timedelta(days=7)  # DIGESTD_PAPER_MAX_AGE_DAYS' default
CHUNK = 1000


def upgrade() -> None:
    when = digestd.core.models.UTCDateTime()
    with op.batch_alter_table("entry", schema=None) as batch_op:
        batch_op.add_column(sa.Column("listed_at", when, nullable=True))
        batch_op.add_column(
            sa.Column("recent", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    entry = sa.table(
        "entry",
        sa.column("id", sa.Integer()),
        sa.column("published_at", when),
        sa.column("ingested_at", when),
        sa.column("listed_at", when),
        sa.column("recent", sa.Boolean()),
    )
    conn = op.get_bind()
    # One statement: a paper is listed when it was published, never after it was first seen.
    conn.execute(
        entry.update().values(
            listed_at=sa.case(
                (entry.c.published_at <= entry.c.ingested_at, entry.c.published_at),
                else_=entry.c.ingested_at,
            )
        )
    )
    # Which were a back catalogue when first seen: read, compared here (date arithmetic is
    # written differently by every dialect), updated by chunks of ids.
    old = [
        row.id
        for row in conn.execute(sa.select(entry.c.id, entry.c.published_at, entry.c.ingested_at))
        if row.published_at < row.ingested_at - MAX_AGE
    ]
    for start in range(0, len(old), CHUNK):
        ids = old[start : start + CHUNK]
        conn.execute(entry.update().where(entry.c.id.in_(ids)).values(recent=False))
    with op.batch_alter_table("entry", schema=None) as batch_op:
        batch_op.alter_column("listed_at", existing_type=when, nullable=False)
        batch_op.create_index(batch_op.f("ix_entry_listed_at"), ["listed_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("entry", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_entry_listed_at"))
        batch_op.drop_column("recent")
        batch_op.drop_column("listed_at")
