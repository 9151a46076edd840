"""What the window rules and the never-twice rule read of past deliveries."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, func, select
from sqlmodel import Session, col

from digestd.core.db import chunks
from digestd.core.models import Delivery
from digestd.core.statuses import WINDOW_DONE, DeliveryStatus
from digestd.delivery.deliveries.columns import IN_CHUNK, aware, split_ids

D = DeliveryStatus


@dataclass(frozen=True)
class History:
    """A subscriber's past digests as the window rules need them."""

    last_due_at: datetime | None = None  # due instant of the newest delivery (any status)
    last_window_end: datetime | None = None  # end of the newest sent or skipped window


NO_HISTORY = History()

# A paper is sent only after it was ingested, and `ingested_at` never moves (ingest.store),
# so a paper ingested after `since` can only be in a delivery sent after `since`. Reading
# only those deliveries keeps the never-twice query at a subscriber's last digests instead
# of their whole history, which grows by one digest a day. The margin allows for replicas
# whose clocks disagree (by less than an hour).
SENT_AFTER_MARGIN = timedelta(hours=1)


def history(session: Session, subscriber_ids: Iterable[int]) -> dict[int, History]:
    """Per subscriber: due instant of the newest delivery and the end of the last window
    that was sent or skipped (a failed digest's window is covered again). One query a chunk;
    subscribers without deliveries get an empty History."""
    ids = list(dict.fromkeys(subscriber_ids))
    out: dict[int, History] = dict.fromkeys(ids, NO_HISTORY)
    done = col(Delivery.status).in_(WINDOW_DONE)
    for chunk in chunks(ids, IN_CHUNK):
        rows = session.execute(
            select(
                col(Delivery.subscriber_id),
                func.max(col(Delivery.due_at)),
                func.max(case((done, col(Delivery.window_end)), else_=None)),
            )
            .where(col(Delivery.subscriber_id).in_(chunk))
            .group_by(col(Delivery.subscriber_id))
        ).all()
        for sub_id, last_due, last_end in rows:
            out[sub_id] = History(aware(last_due), aware(last_end))
    return out


def sent_entry_ids(
    session: Session, subscriber_ids: Iterable[int], *, since: datetime | None = None
) -> dict[int, frozenset[int]]:
    """Entries already sent to each subscriber (the never-twice record). With `since`, only
    what a window starting at `since` needs: every sent entry ingested after `since`, found
    in the deliveries sent after it (see SENT_AFTER_MARGIN), with those deliveries' older
    entries too (a caller intersects with its window, as `Selector.select` does)."""
    ids = list(dict.fromkeys(subscriber_ids))
    found: dict[int, set[int]] = {i: set() for i in ids}
    # One single-table query a chunk, a range of the (subscriber_id, sent_at) index.
    # The status is checked here, not in SQL: given `status = 'sent'`, SQLite (and
    # PostgreSQL without statistics) read every sent delivery through the status index.
    for chunk in chunks(ids, IN_CHUNK):
        stmt = select(
            col(Delivery.id),
            col(Delivery.subscriber_id),
            col(Delivery.status),
            col(Delivery.entry_ids),
        ).where(col(Delivery.subscriber_id).in_(chunk))
        if since is not None:
            stmt = stmt.where(col(Delivery.sent_at) > since - SENT_AFTER_MARGIN)
        for delivery_id, sub_id, status, carried in session.execute(stmt):
            if status == D.SENT:
                found[sub_id].update(split_ids(carried, delivery_id))
    return {k: frozenset(v) for k, v in found.items()}
