"""The delivery store's executemany parameters: each driver parameter is the row's value
(processed by its type for the dialect) or the statement's constant, in the driver's order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from digestd.delivery.deliveries.bulk import _driver_params, raw_statement
from digestd.delivery.deliveries.outcomes import _RECORD_NAMES, _record_statement

NOW = datetime(2026, 12, 6, 23, tzinfo=UTC)
ROWS = [
    (7, "sent", None, None, NOW, 3, "1,2,3", "w", 0, None, None, None, '["a"]'),
    (
        8,
        "retry",
        "421 busy",
        NOW + timedelta(minutes=10),
        None,
        0,
        "",
        "w",
        1,
        421,
        "4.7.0",
        "soft",
        "",
    ),
    (9, "pending", None, NOW, None, 0, "", "w", 0, None, None, None, ""),
]


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()], ids=["sqlite", "pg"])
def test_driver_params_are_the_values_and_constants_in_the_drivers_order(dialect: Any) -> None:
    raw = raw_statement(dialect, _record_statement, _RECORD_NAMES)
    assert not raw.as_is  # constants and processors: the path under test
    want = [
        tuple(
            const if i is None else (row[i] if proc is None or row[i] is None else proc(row[i]))
            for i, const, proc in raw.getters
        )
        for row in ROWS
    ]
    got = _driver_params(raw, list(ROWS))
    if not raw.positional:
        want = [dict(zip(raw.order, p, strict=True)) for p in want]  # type: ignore[misc]
    assert got == want
    if raw.positional:  # SQLite: b_failed is bound three times, each the row's value
        assert sum(1 for name in raw.order if name == "b_failed") == 3
        assert [p[raw.order.index("b_failed")] for p in got] == [0, 1, 0]
        assert isinstance(got[0][raw.order.index("b_sent")], str)  # SQLite's datetime text
    assert _driver_params(raw, []) == []
