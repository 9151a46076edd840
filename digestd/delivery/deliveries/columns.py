"""How the delivery store writes some columns and reads them back: the papers a delivery
carried (`entry_ids`) and the reasons it showed beside them (`reasons`), instants that lost
their type, and the driver's row counts."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from digestd.core.models import Delivery, table_of

log = logging.getLogger("digestd.delivery.deliveries")

# Chunk IN lists well below every backend's bound-parameter limit.
IN_CHUNK = 1000

TABLE = table_of(Delivery)


def joined_ids(entry_ids: Sequence[int]) -> str:
    """The `entry_ids` column of a delivery: its papers' ids in rank order, each once."""
    return ",".join(map(str, dict.fromkeys(entry_ids)))


def split_ids(text: str | None, delivery_id: int) -> list[int]:
    """The paper ids of a delivery's `entry_ids` column, in rank order. Only digestd writes
    it; a part edited by hand into something else is skipped with one warning, so one bad
    row cannot stop a send pass or a page."""
    if not text:
        return []
    parts = text.split(",")
    ids = [int(x) for x in parts if x.isdigit()]
    if len(ids) != len(parts):
        log.warning(
            "delivery %s: entry_ids %r has parts that are not paper ids; skipped",
            delivery_id,
            text[:200],
        )
    return ids


def joined_reasons(reasons: Sequence[str]) -> str:
    """The `reasons` column of a sent delivery: a JSON list of strings, one per paper in the
    order of `entry_ids` ("" when none was stored)."""
    return json.dumps(list(reasons), ensure_ascii=False) if reasons else ""


def split_reasons(text: str | None, delivery_id: int) -> list[str]:
    """The reasons a delivery showed, in the order of its papers ([] when none were stored:
    a digest sent before they were, or a column edited into something else, with a warning)."""
    if not text:
        return []
    try:
        found = json.loads(text)
    except ValueError:
        found = None
    if not isinstance(found, list) or not all(isinstance(r, str) for r in found):
        log.warning(
            "delivery %s: reasons %r are not a list of strings; ignored", delivery_id, text[:200]
        )
        return []
    return found


def rowcount(result: Any) -> int:
    """The rows a statement changed, as the driver counts them (0 when it does not say)."""
    return int(getattr(result, "rowcount", 0) or 0)


def aware(value: datetime | str | None) -> datetime | None:
    """MAX() over a CASE loses the column type on some backends (SQLite gives the text):
    read it back as aware UTC."""
    if value is None:
        return None
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when if when.tzinfo else when.replace(tzinfo=UTC)
