"""Planning against a real database with a fake clock: local hours across DST changes,
weekly digests, catch-up after downtime, and planning twice (also concurrently)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlmodel import select

from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Delivery
from digestd.delivery.planning import plan_due
from tests.support.digests import add_subscriber


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def subscribe(app: AppContext, email: str, joined: datetime = utc(2026, 1, 1), **prefs) -> int:
    with session_scope(app.engine) as s:
        return add_subscriber(s, email, joined, **prefs).id  # type: ignore[return-value]


def planned(app: AppContext) -> list[Delivery]:
    with session_scope(app.engine) as s:
        return list(s.exec(select(Delivery).order_by(Delivery.id)))


def mark_sent(app: AppContext) -> None:
    """Stand in for the sender: whatever is planned has gone out (one statement)."""
    with session_scope(app.engine) as s:
        s.execute(
            update(Delivery)
            .where(Delivery.status == "pending")  # type: ignore[arg-type]
            .values(status="sent")
        )


def step_through(app: AppContext, clock, start: datetime, end: datetime, step: timedelta) -> None:
    """Plan every `step` from start to end, each tick's digests sent before the next (when a
    delivery was planned is its created_at, the clock's time then)."""
    clock.set(start)
    while clock() <= end:  # bounded by end
        plan_due(app)
        mark_sent(app)
        clock.advance(seconds=step.total_seconds())


def test_zones_across_dst_changes_are_each_planned_once_at_the_right_instant(
    app: AppContext, clock
) -> None:
    # Berlin falls back on 2026-10-25 (02:00-03:00 happens twice): hour 2 sends at the first.
    berlin = subscribe(app, "berlin@example.org", send_hour=2, timezone="Europe/Berlin")
    # New York falls back on 2026-11-01 (01:00-02:00 twice).
    ny = subscribe(app, "ny@example.org", send_hour=1, timezone="America/New_York")
    # Sydney moves forward on 2026-10-04 (02:00 does not exist): sent at 03:00 AEDT.
    sydney = subscribe(app, "sydney@example.org", send_hour=2, timezone="Australia/Sydney")
    tokyo = subscribe(app, "tokyo@example.org", send_hour=7, timezone="Asia/Tokyo")

    # A first pass so everyone has a digest before the interesting days.
    clock.set(utc(2026, 10, 2, 0))
    plan_due(app)
    mark_sent(app)
    before = {d.id for d in planned(app)}

    starts = []
    for day_start, day_end in [
        (utc(2026, 10, 3, 6), utc(2026, 10, 4, 6)),  # Sydney's spring forward
        (utc(2026, 10, 24, 12), utc(2026, 10, 25, 12)),  # Berlin's fall back
        (utc(2026, 10, 31, 12), utc(2026, 11, 1, 12)),  # New York's fall back
    ]:
        starts.append(day_start)
        step_through(app, clock, day_start, day_end, timedelta(minutes=15))

    rows = [d for d in planned(app) if d.id not in before]
    by = {(d.subscriber_id, d.period): d for d in rows}
    assert len(by) == len(rows), "a (subscriber, period) was planned twice"
    assert by[(berlin, "2026-10-25")].due_at == utc(2026, 10, 25, 0)  # 02:00 CEST, first
    assert by[(ny, "2026-11-01")].due_at == utc(2026, 11, 1, 5)  # 01:00 EDT, first
    assert by[(sydney, "2026-10-04")].due_at == utc(2026, 10, 3, 16)  # 03:00 AEDT
    assert by[(tokyo, "2026-10-04")].due_at == utc(2026, 10, 3, 22)
    # Planned at the first 15-minute tick at or after the due instant, not before.
    ticking = [d for d in rows if d.created_at not in starts]  # first ticks catch up
    assert len(ticking) >= 8
    for d in ticking:
        assert d.created_at >= d.due_at  # type: ignore[operator]
        assert d.created_at - d.due_at < timedelta(minutes=15)  # type: ignore[operator]


def test_weekly_digest_on_the_chosen_weekday_once_a_week(app: AppContext, clock) -> None:
    sub = subscribe(
        app, "weekly@example.org", frequency="weekly", send_weekday=3, send_hour=9, timezone="UTC"
    )
    clock.set(utc(2026, 11, 18, 0))  # Wednesday of W47
    plan_due(app)
    mark_sent(app)
    step_through(app, clock, utc(2026, 11, 18, 1), utc(2026, 12, 2, 23), timedelta(hours=2))
    rows = [d for d in planned(app) if d.subscriber_id == sub]
    assert [d.period for d in rows] == ["2026-W46", "2026-W47", "2026-W48"]
    assert [d.due_at for d in rows[1:]] == [utc(2026, 11, 19, 9), utc(2026, 11, 26, 9)]
    assert rows[2].window_start == rows[1].window_end  # the week follows on from the last


@pytest.mark.backend  # the history query and INSERT … ON CONFLICT
def test_after_three_days_down_one_catch_up_digest_covers_the_gap(app: AppContext, clock) -> None:
    sub = subscribe(app, "daily@example.org", send_hour=8, timezone="Europe/Berlin")
    clock.set(utc(2026, 11, 23, 7, 5))
    plan_due(app)
    mark_sent(app)
    [first] = planned(app)
    clock.set(utc(2026, 11, 26, 9))  # down from the 23rd to the 26th
    report = plan_due(app)
    assert report.planned == 1
    rows = [d for d in planned(app) if d.subscriber_id == sub]
    assert [d.period for d in rows] == ["2026-11-23", "2026-11-26"]
    assert rows[1].window_start == first.window_end == utc(2026, 11, 23, 7, 5)
    assert rows[1].window_end == utc(2026, 11, 26, 9)


@pytest.mark.backend  # the history query and INSERT … ON CONFLICT
def test_only_active_subscribers_are_planned(app: AppContext, clock) -> None:
    clock.set(utc(2026, 11, 26, 12))
    subscribe(app, "on@example.org")
    for status in ("pending", "unsubscribed", "bounced", "suspended"):
        with session_scope(app.engine) as s:
            add_subscriber(s, f"{status}@example.org", utc(2026, 1, 1)).status = status
    report = plan_due(app)
    assert report.planned == 1 and len(planned(app)) == 1


@pytest.mark.backend  # the history query and INSERT … ON CONFLICT
def test_planning_twice_and_concurrently_never_plans_twice(
    app: AppContext, clock, settings
) -> None:
    clock.set(utc(2026, 11, 26, 12))
    for i in range(40):
        subscribe(app, f"u{i}@example.org", send_hour=i % 12)
    # Two planners with their own engines (separate connections, as two processes have),
    # started together.
    others = [AppContext(settings=settings, clock=clock) for _ in range(2)]
    barrier = threading.Barrier(2)
    reports = []

    def run(ctx: AppContext) -> None:
        barrier.wait(timeout=10)
        reports.append(plan_due(ctx))

    threads = [threading.Thread(target=run, args=(c,)) for c in others]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for c in others:
        c.dispose()
    assert sum(r.planned for r in reports) == 40
    again = plan_due(app)  # and once more after both
    assert again.planned == 0
    rows = planned(app)
    assert len(rows) == 40 == len({(d.subscriber_id, d.period) for d in rows})
    assert len({d.message_id for d in rows}) == 40


@pytest.mark.backend  # the history query and INSERT … ON CONFLICT
def test_send_now_plans_selected_addresses_regardless_of_hour(app: AppContext, clock) -> None:
    clock.set(utc(2026, 11, 26, 3))  # new subscribers, whose hour (8) is still ahead
    subscribe(app, "a@example.org", joined=clock())
    subscribe(app, "b@example.org", joined=clock())
    assert plan_due(app).planned == 0
    report = plan_due(app, force=True, emails=["A@example.org", "nobody@example.org"])
    assert report.planned == 1 and report.unknown == ["nobody@example.org"]
    [row] = planned(app)
    assert row.period == "2026-11-26" and row.due_at == clock()
    mark_sent(app)
    clock.set(utc(2026, 11, 26, 9))  # the regular hour comes: a's period is already done
    assert plan_due(app).planned == 1  # only b
