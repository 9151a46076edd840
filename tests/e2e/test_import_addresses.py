"""`digestd subscribers import` writes what it checked: each address normalized once, each
new subscriber with its own link key and the lifecycle's consent and stop rules (the bulk
path inserts plain column values, not model objects)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from digestd.subscribers.csv_io import COLUMNS
from tests.support.subscribers import Invoke

# Batches of 2 rows: the written rows come from several committed batches.
pytestmark = pytest.mark.cli_env(DIGESTD_BATCH_SIZE="2")


def test_imported_addresses_are_stored_normalized_with_their_own_links_and_consent(
    invoke: Invoke, tmp_path: Path, db_url: str
) -> None:
    path = tmp_path / "people.csv"
    rows = [
        ",".join(COLUMNS),
        "  Ana@Example.ORG  ,Ana,,,daily,8,UTC,10,html,active",
        # Decomposed é: its normalized form (NFC) is not its own text, validated again.
        "jose\u0301@example.org,José,,,daily,8,UTC,10,html,pending",
        "spam@example.org,,,,daily,8,UTC,10,html,blocklisted",
        "gone@example.org,,,,daily,8,UTC,10,html,unsubscribed",
        "bad@example.org,,,,daily,8,UTC,10,html,cleaned",
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = invoke("subscribers", "import", str(path))
    assert result.exit_code == 0, result.output
    assert "added 5" in result.stdout

    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        stored = conn.execute(
            sa.text(
                "SELECT email, status, suppressed, stopped_by, link_key, consent_given_by,"
                " confirmed_at IS NOT NULL, consent_source FROM subscriber ORDER BY id"
            )
        ).all()
    engine.dispose()
    got = {r[0]: (r[1], bool(r[2]), r[3], r[5], bool(r[6])) for r in stored}
    assert got == {
        "ana@example.org": ("active", False, None, "import", True),
        "jos\u00e9@example.org": ("pending", False, None, "import", False),
        "spam@example.org": ("unsubscribed", True, "admin", "import", True),
        "gone@example.org": ("unsubscribed", False, "person", "import", True),
        "bad@example.org": ("bounced", True, "bounce", "import", True),
    }
    # Every signed link is bound to the link key: one of its own for each subscriber.
    keys = [r[4] for r in stored]
    assert len(set(keys)) == 5 and all(len(k) == 12 for k in keys)
    assert stored[0][7] == "import people.csv line 2 (no opt-in time in the file)"
