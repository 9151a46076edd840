"""What a digest covers: its period, its send instant, its window of papers, its history
and the local date it is labelled with. Planning, sending and preview all ask this module.

Rules:
- a daily digest's period is the subscriber's local date (`2026-11-26`); a weekly one's is
  the ISO week of the local date (`2026-W48`) and it is sent on `send_weekday` (0 = Monday);
- the send instant is `send_hour:00` local time on the period's send day; when that wall
  time does not exist (spring forward) it moves to the next valid instant (the transition);
  when it happens twice (fall back) the first occurrence counts, and the unique
  (subscriber, period) key makes sure it is sent once;
- the due period is the latest one whose send instant has passed, so after downtime there
  is one catch-up digest (not one per missed day);
- the window is (previous digest's window end, planning time]: papers ingested in it are
  the candidates; the first digest looks one period back. A failed digest's window is
  covered again by the next one (history counts only sent and skipped digests);
- the date in the subject is the subscriber's LOCAL date at the window's end (a Tokyo
  08:00 digest is dated that Tokyo morning, not the UTC day before).

The time rules are pure functions (no database, no clock), so the DST rules can be tested
exhaustively. Time zones come from the standard `zoneinfo`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlmodel import Session

from digestd.core.models import Schedule, Subscriber
from digestd.delivery import deliveries
from digestd.delivery.deliveries import History
from digestd.ranking.select import SubscriberSelection, select_for_subscriber

PERIOD_LENGTH = {"daily": timedelta(days=1), "weekly": timedelta(days=7)}


@dataclass(frozen=True)
class DuePeriod:
    """A period a digest is (or becomes) due for, and the UTC instant it became due."""

    period: str
    due_at: datetime


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; unknown names fall back to UTC (validated on input elsewhere)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def period_key(frequency: str, local_day: date) -> str:
    """`2026-11-26` for daily, the ISO week `2026-W48` for weekly."""
    if frequency == "weekly":
        year, week, _ = local_day.isocalendar()
        return f"{year}-W{week:02d}"
    return local_day.isoformat()


def _wall(ts: int, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ts, UTC).astimezone(tz).replace(tzinfo=None)


def send_instant(local_day: date, hour: int, tz: ZoneInfo) -> datetime:
    """The UTC instant local time reaches `hour:00` on `local_day`, DST-correct."""
    naive = datetime.combine(local_day, time(hour))
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == naive:
        # The wall time exists; for a repeated hour fold=0 is its first occurrence.
        return first
    # The wall time falls into a gap (spring forward). zoneinfo's two readings of it lie
    # on both sides of the transition; the first instant whose wall time is at or after
    # `naive` is the transition itself. No library exposes transitions, hence this
    # bisection over whole seconds (bounded: log2 of the gap length, ~13 steps an hour).
    second = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    lo, hi = sorted((int(first.timestamp()), int(second.timestamp())))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _wall(mid, tz) >= naive:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def latest_period(
    frequency: str, send_hour: int, send_weekday: int, timezone: str, now: datetime
) -> DuePeriod:
    """The most recent period whose send instant is at or before `now`."""
    tz = zone(timezone)
    today = now.astimezone(tz).date()
    if frequency == "weekly":
        day = today - timedelta(days=today.weekday()) + timedelta(days=send_weekday % 7)
        step = timedelta(days=7)
    else:
        day, step = today, timedelta(days=1)
    instant = send_instant(day, send_hour, tz)
    if instant > now:
        day -= step
        instant = send_instant(day, send_hour, tz)
    return DuePeriod(period_key(frequency, day), instant)


def current_period(frequency: str, timezone: str, now: datetime) -> DuePeriod:
    """The period containing `now` locally, due right away (for send-now, regardless of hour)."""
    return DuePeriod(period_key(frequency, now.astimezone(zone(timezone)).date()), now)


def due_period(
    frequency: str,
    send_hour: int,
    send_weekday: int,
    timezone: str,
    now: datetime,
    *,
    last_due_at: datetime | None,
    since: datetime | None = None,
    force: bool = False,
) -> DuePeriod | None:
    """The period to plan now, or None when the subscriber's latest period is already planned.

    `last_due_at` is the due instant of the subscriber's newest delivery: comparing instants
    (not keys) means a digest sent early by send-now is not followed by a plan for the
    period before it. `since` (when the subscriber became active) keeps a new subscriber
    from getting a "missed" digest for a period that ended before they joined.
    """
    if force:
        return current_period(frequency, timezone, now)
    latest = latest_period(frequency, send_hour, send_weekday, timezone, now)
    if last_due_at is not None and last_due_at >= latest.due_at:
        return None
    if since is not None and latest.due_at < since:
        return None
    return latest


def window(
    frequency: str, now: datetime, previous_end: datetime | None
) -> tuple[datetime, datetime]:
    """Entries a digest covers: from the previous digest's end (or one period back) to now."""
    start = (
        previous_end
        if previous_end is not None
        else now - PERIOD_LENGTH.get(frequency, PERIOD_LENGTH["daily"])
    )
    return min(start, now), now


def local_day(when: datetime, timezone: str) -> date:
    """The subscriber's local date at `when`: the date a digest's subject carries."""
    return when.astimezone(zone(timezone)).date()


@dataclass(frozen=True)
class Coverage:
    """What one digest covers: period, due instant, window (start, end] and its local date."""

    period: str
    due_at: datetime
    window_start: datetime
    window_end: datetime
    day: date


def plan_coverage(
    sub: Schedule,
    now: datetime,
    past: History,
    *,
    since: datetime | None,
    force: bool = False,
) -> Coverage | None:
    """The digest to plan for `sub` now, or None when its latest period is already planned
    (or began before `since`, when the subscriber joined)."""
    due = due_period(
        sub.frequency,
        sub.send_hour,
        sub.send_weekday,
        sub.timezone,
        now,
        last_due_at=past.last_due_at,
        since=since,
        force=force,
    )
    if due is None:
        return None
    start, end = window(sub.frequency, now, past.last_window_end)
    return Coverage(due.period, due.due_at, start, end, local_day(end, sub.timezone))


def current_coverage(sub: Schedule, now: datetime, past: History) -> Coverage:
    """What a digest built for `sub` at `now` covers (preview; `send-now` plans the same)."""
    due = current_period(sub.frequency, sub.timezone, now)
    start, end = window(sub.frequency, now, past.last_window_end)
    return Coverage(due.period, due.due_at, start, end, local_day(end, sub.timezone))


@dataclass(frozen=True)
class Preview:
    """The digest a subscriber gets next: what it covers and what it carries, and the
    delivery it is when one is planned and waiting (None: the digest a send-now would plan)."""

    coverage: Coverage
    selection: SubscriberSelection
    waiting: deliveries.DeliveryRow | None = None


def preview(session: Session, sub: Subscriber, now: datetime) -> Preview:
    """What the next digest of this subscriber covers and carries: the same window, history,
    never-twice record, ranking (votes faded to the window's end) and local date as the
    mailed one. A delivery planned and not sent yet (pending, or waiting for a retry) is
    that digest: its own window, so a retried digest equals its preview."""
    assert sub.id is not None
    waiting = deliveries.waiting_for(session, sub.id)
    if waiting is not None and waiting.window_start and waiting.window_end:
        end = waiting.window_end
        cover = Coverage(
            waiting.period,
            waiting.due_at or end,
            waiting.window_start,
            end,
            local_day(end, sub.timezone),
        )
    else:
        waiting = None
        cover = current_coverage(sub, now, deliveries.history(session, [sub.id])[sub.id])
    chosen = select_for_subscriber(session, sub, cover.window_start, cover.window_end)
    return Preview(cover, chosen, waiting)
