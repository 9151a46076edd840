"""What sending reads of its subscribers (`queries.for_sending`) is what the subscriber rows
hold, on both databases: the JSON lists are read as text and decoded once per distinct text."""

from __future__ import annotations

import pytest

from digestd.core.context import AppContext
from digestd.core.db import read_scope, session_scope
from digestd.core.models import Subscriber
from digestd.subscribers import queries
from digestd.subscribers.store import SEND_COLUMNS, SendRow
from tests.conftest import FakeClock
from tests.support.digests import add_subscriber

# About what the database itself does (the rows as each database returns them):
# the PostgreSQL twins stay in the quick check (tests/conftest.py).
pytestmark = pytest.mark.backend

PREFS = [
    {"categories": [], "follows": [], "muted_authors": []},
    {"categories": ["cs.CV"], "follows": ["Yann LeCun"], "muted_authors": []},
    {"categories": ["cs.CV", "cs.CL"], "follows": [], "muted_authors": ["P. Liang", "Zoë Ö"]},
    {"categories": ["cs.CV"], "follows": ["Yann LeCun"], "muted_authors": ["名前"]},
    {"categories": ["cs.LG"], "follows": ["a, b", 'quote "q"'], "muted_authors": []},
]


def test_for_sending_reads_every_column_as_the_row_holds_it(
    app: AppContext, clock: FakeClock
) -> None:
    now = clock()
    with session_scope(app.engine) as session:
        ids = [
            add_subscriber(session, f"r{i}@example.org", now, name=f"R {i}", **prefs).id
            for i, prefs in enumerate(PREFS)
        ]
    with read_scope(app.engine) as session:
        got = queries.for_sending(session, [*ids, 10_000])  # an id nobody has: left out
        assert sorted(got) == sorted(ids)
        for sub_id in ids:
            sub = session.get(Subscriber, sub_id)
            assert sub is not None
            want = tuple(
                tuple(v) if isinstance(v, list) else v
                for v in (getattr(sub, name) for name in SendRow._fields)
            )
            assert tuple(got[sub_id]) == want
            assert isinstance(got[sub_id].categories, tuple)


def test_send_rows_name_the_send_columns_in_order() -> None:
    assert SendRow._fields == tuple(c.key for c in SEND_COLUMNS)
