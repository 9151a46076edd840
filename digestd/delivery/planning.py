"""Planning: which subscribers are due now, one delivery each (idempotent).

Streams active subscribers in id order, a batch at a time (memory bounded by the batch);
per batch one history query (`deliveries.history`), the coverage of each due digest from
`digests.plan_coverage`, and one INSERT … ON CONFLICT DO NOTHING (`deliveries.plan`), so a
concurrent planner, or a second run, adds nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from digestd.core.context import AppContext
from digestd.core.db import refresh_statistics, session_scope
from digestd.core.models import Delivery, table_of
from digestd.delivery import deliveries, digests
from digestd.subscribers import queries as subscribers

# The tables planning's batch queries read (statistics kept fresh on PostgreSQL).
PLANNING_TABLES = (*subscribers.TABLE_NAMES, table_of(Delivery).name)


@dataclass
class PlanReport:
    """What one planning pass did."""

    checked: int = 0  # active subscribers looked at
    planned: int = 0  # new deliveries created
    existing: int = 0  # due, but the (subscriber, period) delivery already existed
    unknown: list[str] = field(default_factory=list)  # emails asked for that are not active


def plan_due(
    ctx: AppContext, *, force: bool = False, emails: Iterable[str] | None = None
) -> PlanReport:
    """Create the deliveries that are due now (or, with `force`, for the current period)."""
    now = ctx.now()
    wanted = sorted({e.strip().lower() for e in emails}) if emails is not None else None
    domain = deliveries.message_id_domain(ctx.settings.from_address)
    report = PlanReport()
    seen: set[str] = set()
    last_id = 0
    refresh_statistics(ctx.engine, PLANNING_TABLES)
    while True:
        # One short transaction per batch: planning never holds the write lock for long.
        with session_scope(ctx.engine) as session:
            batch = subscribers.active_page(
                session, after_id=last_id, limit=ctx.settings.batch_size, emails=wanted
            )
            if not batch:
                break
            last_id = batch[-1].id
            report.checked += len(batch)
            if wanted is not None:  # only for named addresses: memory stays per batch
                seen.update(s.email for s in batch)
            past = deliveries.history(session, [s.id for s in batch])
            rows = []
            for sub in batch:
                cover = digests.plan_coverage(
                    sub, now, past[sub.id], since=sub.confirmed_at or sub.created_at, force=force
                )
                if cover is None:
                    continue
                rows.append(
                    deliveries.NewDelivery(
                        subscriber_id=sub.id,
                        period=cover.period,
                        window_start=cover.window_start,
                        window_end=cover.window_end,
                        due_at=cover.due_at,
                        message_id=deliveries.new_message_id(cover.period, sub.id, domain),
                    )
                )
            inserted = deliveries.plan(session, rows, now=now)
            report.planned += inserted
            report.existing += len(rows) - inserted
    if wanted is not None:
        report.unknown = [e for e in wanted if e not in seen]
    return report
