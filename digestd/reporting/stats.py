"""The figures of `digestd stats`: how the list is doing, per day and against sender limits.

Computed here, drawn by the CLI. Every figure comes from the stores that own the data: the
delivery store (sent, skipped, failed, bounces at SMTP time, the oldest waiting delivery),
the subscribers' audit events (unsubscribes by way, complaints) and confirmations, the
sources' fetch health, and the inbound mail that came back (bounces after acceptance, and
spam complaints).

Days are UTC days; the period is the last `days` days, today included.

Only what is the list's counts in its bounce rate: hard bounces of addresses on the list,
over the digests that reached a server's verdict. Failures of our own (severity `ours`: the
relay down, AUTH failing, a timeout before the greeting; see core/failures.py) and bounces
that matched no subscriber are counted apart (`relay_failures`, `unmatched_bounces`) and
shown as such, never in the rate. Severities are read from the rows' fields, never from
the error text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlmodel import Session

from digestd.core.failures import Severity
from digestd.core.models import Source
from digestd.core.statuses import DeliveryStatus, SubscriberStatus
from digestd.delivery.deliveries import counts_per_day, oldest_waiting
from digestd.inbound import store as inbound_store
from digestd.ingest.sources import interval, list_sources
from digestd.subscribers.lifecycle import UNSUBSCRIBE_WAYS
from digestd.subscribers.queries import (
    confirmed_per_day,
    count_by_status,
    status_changes_per_day,
)

# Gmail's and Yahoo's bulk-sender rules (February 2024): keep the spam complaint rate under
# 0.3 % and aim for under 0.1 %.
COMPLAINT_LIMIT = 0.003
COMPLAINT_AIM = 0.001
# Bounces have no published mailbox-provider limit; 2 % of hard bounces is the threshold most
# sending services act on (Amazon SES reviews an account at 5 %). Warn at half of it.
BOUNCE_LIMIT = 0.02
BOUNCE_WARN = 0.01
# Ways a subscriber leaves (event detail `way`); the chart shows one-click, page and mail.
WAYS = tuple(UNSUBSCRIBE_WAYS)
# A source is stale when it has not been fetched for this many of its intervals.
STALE_INTERVALS = 3


@dataclass
class Day:
    """What happened on one UTC day."""

    day: date
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    hard_bounces: int = 0  # of subscribers' addresses: at SMTP time and by mail
    soft_bounces: int = 0
    relay_failures: int = 0  # deliveries that met a failure of ours (not the list's)
    unmatched_bounces: int = 0  # bounces by mail that matched no subscriber (not the list's)
    complaints: int = 0
    unsubscribes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WAYS, 0))
    new_confirmed: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "date": self.day.isoformat(),
            "sent": self.sent,
            "skipped": self.skipped,
            "failed": self.failed,
            "hard_bounces": self.hard_bounces,
            "soft_bounces": self.soft_bounces,
            "relay_failures": self.relay_failures,
            "unmatched_bounces": self.unmatched_bounces,
            "complaints": self.complaints,
            "unsubscribes": dict(self.unsubscribes),
            "new_confirmed": self.new_confirmed,
        }


# The per-day series, in the order they are drawn: (JSON key, label).
SERIES = (
    ("sent", "digests sent"),
    ("skipped", "skipped"),
    ("failed", "failed"),
    ("hard_bounces", "hard bounces"),
    ("soft_bounces", "soft bounces"),
    ("relay_failures", "relay failures"),
    ("unmatched_bounces", "unmatched bounce"),
    ("complaints", "complaints"),
    ("unsubscribes.one-click", "unsub one-click"),
    ("unsubscribes.page", "unsub page"),
    ("unsubscribes.mail", "unsub mail"),
    ("new_confirmed", "new confirmed"),
)


def series_value(day: Day, key: str) -> int:
    """One series' figure for a day (`unsubscribes.page` reads the nested count)."""
    if key.startswith("unsubscribes."):
        return day.unsubscribes[key.partition(".")[2]]
    return int(getattr(day, key))


@dataclass
class Rate:
    """A rate of the period against its limit."""

    name: str
    count: int
    of: int  # the denominator
    rate: float
    limit: float
    aim: float | None
    level: str  # ok | near | over

    def as_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "of": self.of,
            "rate": round(self.rate, 6),
            "limit": self.limit,
            "aim": self.aim,
            "level": self.level,
        }


@dataclass
class SourceHealth:
    """A source's fetch health, in one word plus the facts behind it."""

    id: int
    name: str
    health: str  # ok | failing | stale | never fetched | disabled
    last_status: str | None
    last_fetch_at: datetime | None
    failures: int
    last_error: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "health": self.health,
            "last_status": self.last_status,
            "last_fetch_at": self.last_fetch_at.isoformat() if self.last_fetch_at else None,
            "failures": self.failures,
            "last_error": self.last_error,
        }


@dataclass
class Waiting:
    """The due delivery that has waited longest."""

    id: int
    email: str
    period: str
    status: str
    due_at: datetime | None
    waiting_seconds: int
    attempts: int
    error: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "period": self.period,
            "status": self.status,
            "due_at": self.due_at.isoformat() if self.due_at else None,
            "waiting_seconds": self.waiting_seconds,
            "attempts": self.attempts,
            "error": self.error,
        }


@dataclass
class Stats:
    """Everything `digestd stats` shows; `as_json()` is the `--json` document."""

    start: date
    end: date
    subscribers: dict[str, int]
    days: list[Day]
    bounces: Rate
    complaints: Rate
    sources: list[SourceHealth]
    oldest_due: Waiting | None

    @property
    def totals(self) -> Day:
        return total(self.days)

    @property
    def warnings(self) -> list[str]:
        """One line per rate that is near or over its limit."""
        out = []
        for rate in (self.complaints, self.bounces):
            if rate.level == "over":
                out.append(
                    f"{rate.name} rate {percent(rate.rate)} is over the {percent(rate.limit)} "
                    "limit: mailbox providers may reject or junk your mail"
                )
            elif rate.level == "near":
                target = rate.aim if rate.aim is not None else rate.limit
                out.append(
                    f"{rate.name} rate {percent(rate.rate)} is near the {percent(rate.limit)} "
                    f"limit (aim under {percent(target)})"
                )
        return out

    def as_json(self) -> dict[str, Any]:
        totals = self.totals.as_json()
        del totals["date"]
        return {
            "period": {
                "start": self.start.isoformat(),
                "end": self.end.isoformat(),
                "days": len(self.days),
                "timezone": "UTC",
            },
            "subscribers": dict(self.subscribers),
            "daily": [d.as_json() for d in self.days],
            "totals": totals,
            "rates": {"bounces": self.bounces.as_json(), "complaints": self.complaints.as_json()},
            "warnings": self.warnings,
            "sources": [s.as_json() for s in self.sources],
            "oldest_due": self.oldest_due.as_json() if self.oldest_due else None,
        }


def total(days: Iterable[Day]) -> Day:
    """The sum of some days (its `day` is the last one's)."""
    out = Day(date.min)
    for d in days:
        out.day = d.day
        for key in (
            "sent",
            "skipped",
            "failed",
            "hard_bounces",
            "soft_bounces",
            "relay_failures",
            "unmatched_bounces",
        ):
            setattr(out, key, getattr(out, key) + getattr(d, key))
        out.complaints += d.complaints
        out.new_confirmed += d.new_confirmed
        for way, n in d.unsubscribes.items():
            out.unsubscribes[way] += n
    return out


def percent(value: float) -> str:
    """0.0012 -> '0.12 %'."""
    return f"{value * 100:.2f} %"


def compute(session: Session, now: datetime, *, days: int, fetch_interval_minutes: int) -> Stats:
    """The figures of the last `days` UTC days (today included) as of `now`."""
    end = now.astimezone(UTC).date()
    start = end - timedelta(days=days - 1)
    since = datetime.combine(start, time(), tzinfo=UTC)
    until = datetime.combine(end + timedelta(days=1), time(), tzinfo=UTC)
    by_day = {start + timedelta(days=i): Day(start + timedelta(days=i)) for i in range(days)}

    # Deliveries that reached a server's verdict (sent, or failed for a reason that is not
    # ours): the bounce rate's denominator.
    attempted = 0
    for c in counts_per_day(session, since, until):
        d = by_day.get(c.day)
        if d is None:
            continue
        if c.status in (DeliveryStatus.SENT, DeliveryStatus.SKIPPED, DeliveryStatus.FAILED):
            setattr(d, c.status.value, getattr(d, c.status.value) + c.count)
        if c.severity == Severity.HARD:
            d.hard_bounces += c.count
        elif c.severity == Severity.SOFT:
            d.soft_bounces += c.count
        elif c.severity == Severity.OURS:
            d.relay_failures += c.count
        if c.status == DeliveryStatus.SENT or (
            c.status == DeliveryStatus.FAILED and c.severity != Severity.OURS
        ):
            attempted += c.count

    for change in status_changes_per_day(session, since, until):
        d = by_day.get(change.day)
        if d is None or change.new != SubscriberStatus.UNSUBSCRIBED:
            continue
        way = change.way if change.way in WAYS else "admin"
        d.unsubscribes[way] += change.count
    # Bounces that came back after the server accepted the message, and spam complaints.
    # (Refusals during the SMTP conversation are counted from the deliveries above.)
    # Bounces that named no subscriber of ours are counted apart, whatever they say.
    for k in inbound_store.counts_per_day(session, since, until, ("bounce", "complaint")):
        d = by_day.get(k.day)
        if d is None:
            continue
        if k.kind == "complaint":
            d.complaints += k.count
        elif not k.matched:
            d.unmatched_bounces += k.count
        elif k.severity == Severity.HARD:
            d.hard_bounces += k.count
        elif k.severity == Severity.SOFT:
            d.soft_bounces += k.count

    for day, n in confirmed_per_day(session, since, until).items():
        if day in by_day:
            by_day[day].new_confirmed += n

    ordered = [by_day[k] for k in sorted(by_day)]
    totals = total(ordered)
    bounces = _rate(
        "bounce", totals.hard_bounces, attempted, BOUNCE_LIMIT, None, warn_at=BOUNCE_WARN
    )
    complaints = _rate(
        "complaint",
        totals.complaints,
        totals.sent,
        COMPLAINT_LIMIT,
        COMPLAINT_AIM,
        warn_at=COMPLAINT_AIM,
    )
    return Stats(
        start=start,
        end=end,
        subscribers=count_by_status(session),
        days=ordered,
        bounces=bounces,
        complaints=complaints,
        sources=source_health(list_sources(session), now, fetch_interval_minutes),
        oldest_due=_waiting(session, now),
    )


def _rate(
    name: str, count: int, of: int, limit: float, aim: float | None, *, warn_at: float
) -> Rate:
    rate = count / of if of else 0.0
    level = "over" if rate >= limit else "near" if rate >= warn_at else "ok"
    return Rate(name, count, of, rate, limit, aim, level)


def source_health(
    sources: Iterable[Source], now: datetime, default_minutes: int
) -> list[SourceHealth]:
    """Each source's health in one word: ok, failing, stale, never fetched or disabled."""
    out = []
    for s in sources:
        if not s.enabled:
            health = "disabled"
        elif s.last_fetch_at is None:
            health = "never fetched"
        elif s.failures > 0 or s.last_status == "error":
            health = "failing"
        elif now - s.last_fetch_at > interval(s, default_minutes) * STALE_INTERVALS:
            health = "stale"
        else:
            health = "ok"
        out.append(
            SourceHealth(
                id=s.id or 0,
                name=s.name or s.url,
                health=health,
                last_status=s.last_status,
                last_fetch_at=s.last_fetch_at,
                failures=s.failures,
                last_error=s.last_error,
            )
        )
    return out


def _waiting(session: Session, now: datetime) -> Waiting | None:
    row = oldest_waiting(session, now)
    if row is None:
        return None
    since = row.due_at or row.next_attempt_at or now
    return Waiting(
        id=row.id,
        email=row.email,
        period=row.period,
        status=row.status,
        due_at=row.due_at,
        waiting_seconds=max(0, int((now - since).total_seconds())),
        attempts=row.attempts,
        error=row.error,
    )
