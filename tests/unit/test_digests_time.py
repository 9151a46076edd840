"""Period keys and send instants: local hours in real IANA zones, across DST changes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from digestd.delivery.digests import (
    due_period,
    latest_period,
    period_key,
    send_instant,
    window,
    zone,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_period_keys_are_local_date_and_iso_week() -> None:
    assert period_key("daily", date(2026, 11, 26)) == "2026-11-26"
    assert period_key("weekly", date(2026, 11, 26)) == "2026-W48"
    # ISO week-year differs from the calendar year around new year.
    assert period_key("weekly", date(2027, 1, 1)) == "2026-W53"


def test_plain_hour_in_winter_and_summer() -> None:
    berlin = zone("Europe/Berlin")
    assert send_instant(date(2026, 11, 26), 8, berlin) == utc(2026, 11, 26, 7)
    assert send_instant(date(2026, 7, 1), 8, berlin) == utc(2026, 7, 1, 6)


def test_nonexistent_hour_moves_to_the_next_valid_instant() -> None:
    # 2026-03-29 Berlin: 02:00 CET jumps to 03:00 CEST (01:00 UTC); 02:00 does not exist.
    berlin = zone("Europe/Berlin")
    assert send_instant(date(2026, 3, 29), 2, berlin) == utc(2026, 3, 29, 1)
    # New York 2026-03-08: 02:00 EST -> 03:00 EDT at 07:00 UTC.
    ny = zone("America/New_York")
    assert send_instant(date(2026, 3, 8), 2, ny) == utc(2026, 3, 8, 7)
    # Lord Howe moves only 30 minutes: 02:00 -> 02:30 (+11:00) at 15:30 UTC the day before.
    lh = zone("Australia/Lord_Howe")
    instant = send_instant(date(2026, 10, 4), 2, lh)
    assert instant == utc(2026, 10, 3, 15, 30)
    assert instant.astimezone(lh).strftime("%H:%M") == "02:30"


def test_repeated_hour_is_its_first_occurrence() -> None:
    # 2026-10-25 Berlin: 02:00-03:00 happens twice; the first (CEST) is 00:00 UTC.
    assert send_instant(date(2026, 10, 25), 2, zone("Europe/Berlin")) == utc(2026, 10, 25, 0)
    # 2026-11-01 New York: 01:00 happens twice; first is EDT = 05:00 UTC.
    assert send_instant(date(2026, 11, 1), 1, zone("America/New_York")) == utc(2026, 11, 1, 5)


def test_latest_period_is_today_once_the_hour_has_passed() -> None:
    before = latest_period("daily", 8, 0, "Asia/Tokyo", utc(2026, 11, 25, 22, 59))
    after = latest_period("daily", 8, 0, "Asia/Tokyo", utc(2026, 11, 25, 23, 0))
    assert before.period == "2026-11-25" and before.due_at == utc(2026, 11, 24, 23)
    assert after.period == "2026-11-26" and after.due_at == utc(2026, 11, 25, 23)


def test_weekly_is_due_on_the_chosen_weekday() -> None:
    # Thursday 2026-11-26 is in W48; weekday 3 = Thursday, hour 9 in Sao Paulo (UTC-3).
    p = latest_period("weekly", 9, 3, "America/Sao_Paulo", utc(2026, 11, 26, 12))
    assert p.period == "2026-W48" and p.due_at == utc(2026, 11, 26, 12)
    early = latest_period("weekly", 9, 3, "America/Sao_Paulo", utc(2026, 11, 26, 11, 59))
    assert early.period == "2026-W47" and early.due_at == utc(2026, 11, 19, 12)
    # Sunday subscribers (weekday 6) of W48 get theirs on 2026-11-29.
    sunday = latest_period("weekly", 9, 6, "UTC", utc(2026, 11, 30, 0))
    assert sunday.period == "2026-W48" and sunday.due_at == utc(2026, 11, 29, 9)


def test_due_once_per_period_and_one_catch_up_after_downtime() -> None:
    now = utc(2026, 11, 26, 8)
    first = due_period("daily", 8, 0, "UTC", now, last_due_at=None)
    assert first is not None and first.period == "2026-11-26"
    assert due_period("daily", 8, 0, "UTC", now, last_due_at=first.due_at) is None
    # Three days down: only the latest period is due, not one per missed day.
    later = now + timedelta(days=3, hours=2)
    catch_up = due_period("daily", 8, 0, "UTC", later, last_due_at=first.due_at)
    assert catch_up is not None and catch_up.period == "2026-11-29"
    start, end = window("daily", later, previous_end=now)
    assert (start, end) == (now, later)


def test_send_now_plans_the_current_period_and_the_hour_does_not_replan_earlier() -> None:
    early = utc(2026, 11, 26, 5)  # before the 08:00 hour
    forced = due_period("daily", 8, 0, "UTC", early, last_due_at=None, force=True)
    assert forced is not None and forced.period == "2026-11-26" and forced.due_at == early
    # An hour later yesterday's period is "latest", but a newer digest exists: nothing due.
    assert due_period("daily", 8, 0, "UTC", early + timedelta(hours=1), last_due_at=early) is None


def test_first_window_covers_one_period() -> None:
    now = utc(2026, 11, 26, 8)
    assert window("weekly", now, None) == (now - timedelta(days=7), now)
    assert window("daily", now, None) == (now - timedelta(days=1), now)


def test_a_new_subscriber_is_not_owed_a_period_that_ended_before_they_joined() -> None:
    now = utc(2026, 11, 26, 10)
    joined = utc(2026, 11, 26, 9)
    # Hour 20: yesterday's 20:00 passed before they joined; today's has not come yet.
    assert due_period("daily", 20, 0, "UTC", now, last_due_at=None, since=joined) is None
    at_eight = due_period(
        "daily", 20, 0, "UTC", utc(2026, 11, 26, 20), last_due_at=None, since=joined
    )
    assert at_eight is not None and at_eight.period == "2026-11-26"
