"""delivery: the last failure as data (smtp_code, enhanced_status, severity) and the reasons a
sent digest showed (reasons)

A failure is read once where it happens (`digestd.delivery.failures`) and written as fields,
so nothing reads a status out of `error` any more. Existing rows are converted once here:
the reply code and enhanced status code at the start of their `error` (or after "gave up
after N attempts: "), with the severity the code counted them as before (a 5xx that failed
the delivery: hard; a 4xx: soft) and `ours` for the failures that were ours by their words
(connecting to the relay, a render problem, an error of our own). `reasons` starts empty;
"View in browser" recomputes the reasons of digests sent before it, as it did.

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-02 09:00:00
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0011"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COPY_CHUNK = 5000
# What digestd wrote into `error` before this revision (sending.py, deliveries.py).
_REPLY = re.compile(r"^(?:gave up after \d+ attempts: )?([245]\d\d)(?: ([245]\.\d{1,3}\.\d{1,3}))?")
_OURS = re.compile(r"^(?:gave up after \d+ attempts: )?(SMTP \S+: |render failed: |error: )")


def upgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.add_column(sa.Column("smtp_code", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("enhanced_status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True)
        )
        batch_op.add_column(
            sa.Column("severity", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "reasons", sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default=""
            )
        )
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            "SELECT id, status, error FROM delivery"
            " WHERE error IS NOT NULL AND status IN ('retry', 'failed', 'sent', 'pending')"
        ).execution_options(stream_results=True)
    )
    update = sa.text(
        "UPDATE delivery SET smtp_code = :code, enhanced_status = :enhanced,"
        " severity = :severity WHERE id = :id"
    )
    pending: list[dict[str, object]] = []
    for delivery_id, status, error in rows:
        fields = _legacy_failure(status, error)
        if fields is None:
            continue
        pending.append({"id": delivery_id, **fields})
        if len(pending) >= COPY_CHUNK:
            conn.execute(update, pending)
            pending = []
    if pending:
        conn.execute(update, pending)


def _legacy_failure(status: str, error: str) -> dict[str, object] | None:
    if _OURS.match(error):
        return {"code": None, "enhanced": None, "severity": "ours"}
    found = _REPLY.match(error)
    if found is None:
        return None
    code = int(found.group(1))
    hard = code >= 500 and status == "failed" and not error.startswith("gave up")
    return {"code": code, "enhanced": found.group(2), "severity": "hard" if hard else "soft"}


def downgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_column("reasons")
        batch_op.drop_column("severity")
        batch_op.drop_column("enhanced_status")
        batch_op.drop_column("smtp_code")
