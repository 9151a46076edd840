"""Handing back deliveries a stopping worker still holds (graceful shutdown).

The outbox expires leases of workers that died (`release_expired`); a worker that stops
on purpose knows exactly what it holds and gives it back at once instead of making the
next run wait for the lease to run out.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session

from digestd.models import Delivery


def new_worker_id() -> str:
    """host:pid:random: who holds a claim, unique per process and run, readable in
    `deliveries list` and logs."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def release_worker(session: Session, worker_id: str, now: datetime) -> int:
    """Put this worker's unfinished claims back to pending; returns how many.

    Only rows still `sending` under this worker's id are touched: a delivery that was
    recorded sent/retry/failed meanwhile, or re-claimed by another worker after an expiry,
    no longer matches, so the release can never undo someone else's work. The Message-ID
    stays, so a message the server accepted just before the stop is a same-ID duplicate.
    """
    result = session.execute(
        update(Delivery)
        .where(Delivery.status == "sending", Delivery.claimed_by == worker_id)
        .values(status="pending", lease_until=None, claimed_by=None, next_attempt_at=now)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
