"""Windows and never-twice against the real databases (SQLite file and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import event
from sqlmodel import Session

from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Entry, EntryVersion, Subscriber
from digestd.delivery import deliveries, digests
from digestd.delivery.deliveries import sent_entry_ids
from digestd.ranking.select import Profile, Selector, SubscriberSelection
from tests.conftest import FakeClock
from tests.support.digests import add_subscriber, load_seed_entries, record_sent

# About what the database itself does (the never-twice query):
# the PostgreSQL twins stay in the quick check (tests/conftest.py).
pytestmark = pytest.mark.backend


def select_for_subscriber(session: Session, sub: Subscriber, now: datetime) -> SubscriberSelection:
    """What a digest built now would carry (the preview's path)."""
    return digests.preview(session, sub, now).selection


def test_paper_sent_yesterday_is_not_sent_again_nor_its_new_version(
    app: AppContext, clock: FakeClock
) -> None:
    yesterday = clock() - timedelta(days=1)
    with session_scope(app.engine) as s:
        entries = load_seed_entries(s, clock() - timedelta(hours=3))
        sub = add_subscriber(s, "ada@example.org", yesterday, topics="")
        first = select_for_subscriber(s, sub, clock())
        top = [p.entry for p in first.picks[:3]]
        assert [e.id for e in top] == [entries[0].id, entries[1].id, entries[2].id]
        # Sent yesterday, with a window that ended before these entries were ingested (a late
        # catch-up send): the window alone would offer them again; the history must not.
        record_sent(
            s,
            sub,
            top,
            period=yesterday.date().isoformat(),
            window_start=yesterday - timedelta(days=1),
            window_end=yesterday,
        )

    with session_scope(app.engine) as s:
        sub_id = sub.id
        again = select_for_subscriber(s, s.get(type(sub), sub_id), clock())  # type: ignore[arg-type]
        assert again.profile.window_start == yesterday
        ids = [p.entry.id for p in again.picks]
        assert not {e.id for e in top} & set(ids)
        assert ids[0] == entries[3].id

    # A new version of a sent paper (arXiv replace) updates the same entry row and is
    # re-ingested today: still never twice.
    clock.advance(hours=1)
    with session_scope(app.engine) as s:
        row = s.get(Entry, top[0].id)
        assert row is not None
        row.version = 2
        row.title = row.title + " (v2)"
        row.updated_at = clock()
        row.ingested_at = clock()
        s.add(EntryVersion(entry_id=row.id, version=2, title=row.title, recorded_at=clock()))  # type: ignore[arg-type]
    with session_scope(app.engine) as s:
        again = select_for_subscriber(s, s.get(type(sub), sub_id), clock())  # type: ignore[arg-type]
        assert top[0].id not in [p.entry.id for p in again.picks]
        # someone else, who never got it, does get the new version
        other = add_subscriber(s, "bob@example.org", clock(), topics="DR-Tune")
        theirs = select_for_subscriber(s, other, clock())
        assert theirs.picks[0].entry.title.endswith("(v2)")


def test_window_starts_at_previous_sent_or_skipped_digest(
    app: AppContext, clock: FakeClock
) -> None:
    now = clock()
    with session_scope(app.engine) as s:
        daily = add_subscriber(s, "d@example.org", now, frequency="daily")
        weekly = add_subscriber(s, "w@example.org", now, frequency="weekly")
        skipped = add_subscriber(s, "s@example.org", now)
        failed = add_subscriber(s, "f@example.org", now)
        record_sent(
            s,
            daily,
            [],
            period="p1",
            window_start=now - timedelta(days=3),
            window_end=now - timedelta(days=2),
        )
        record_sent(
            s,
            daily,
            [],
            period="p2",
            window_start=now - timedelta(days=2),
            window_end=now - timedelta(hours=20),
        )
        record_sent(
            s,
            skipped,
            [],
            period="p1",
            window_start=now - timedelta(days=2),
            window_end=now - timedelta(hours=30),
            status="skipped",
        )
        record_sent(
            s,
            failed,
            [],
            period="p1",
            window_start=now - timedelta(days=2),
            window_end=now - timedelta(hours=10),
            status="failed",
        )
        ids = [daily.id, weekly.id, skipped.id, failed.id]

        statements: list[str] = []
        listener = lambda *a: statements.append(a[2])  # noqa: E731
        event.listen(app.engine, "before_cursor_execute", listener)
        try:
            past = deliveries.history(s, ids)  # type: ignore[arg-type]
        finally:
            event.remove(app.engine, "before_cursor_execute", listener)
        assert len(statements) == 1  # one query for any number of subscribers

        ends = {sub_id: h.last_window_end for sub_id, h in past.items()}
        assert ends == {
            daily.id: now - timedelta(hours=20),
            weekly.id: None,
            skipped.id: now - timedelta(hours=30),
            failed.id: None,  # a failed digest did not cover its window
        }
        window = digests.window
        assert window("daily", now, ends[daily.id]) == (now - timedelta(hours=20), now)
        assert window("weekly", now, None) == (now - timedelta(days=7), now)
        assert window("daily", now, None) == (now - timedelta(days=1), now)


def test_batched_selection_matches_single_profile_selection(
    app: AppContext, clock: FakeClock
) -> None:
    now = clock()
    with session_scope(app.engine) as s:
        entries = load_seed_entries(s, now - timedelta(hours=30))
        for e in entries[30:]:
            e.ingested_at = now - timedelta(hours=2)
        profiles = [
            Profile('"KV cache" long-context', (), 5, now - timedelta(days=7), now),
            Profile('"KV cache" long-context', (), 5, now - timedelta(days=1), now),
            Profile("", (), 4, now - timedelta(days=1), now),
            Profile("multi-task -survey", (), 6, now - timedelta(days=7), now),
        ]
        # One selector over the union of the windows (what a send batch loads) ranks each
        # profile as one loaded over its own window alone.
        union = Selector.load(s, now - timedelta(days=7), now)
        batched = {p.key: union.select(p) for p in profiles}
        for profile in profiles:
            single = Selector.load(s, profile.window_start, profile.window_end).select(profile)
            assert [(p.entry.id, p.score, p.reason) for p in batched[profile.key]] == [
                (p.entry.id, p.score, p.reason) for p in single
            ]
        # the one-day window only sees the later half of the entries
        assert all(p.entry.ingested_at > now - timedelta(days=1) for p in batched[profiles[1].key])
        assert len(batched[profiles[0].key]) >= 3


def test_selector_loads_once_for_many_subscribers(app: AppContext, clock: FakeClock) -> None:
    now = clock()
    with session_scope(app.engine) as s:
        load_seed_entries(s, now - timedelta(hours=2), source_name="HF Daily")
        subs = [
            add_subscriber(s, f"u{i}@example.org", now, topics="" if i % 2 else "attention heads")
            for i in range(40)
        ]
        statements: list[str] = []
        listener = lambda *a: statements.append(a[2])  # noqa: E731
        event.listen(app.engine, "before_cursor_execute", listener)
        try:
            start, end = now - timedelta(days=1), now
            sent = sent_entry_ids(s, [u.id for u in subs], since=start)  # type: ignore[misc]
            selector = Selector.load(s, start, end)
            results = [
                selector.select(Profile.for_subscriber(u, start, end), sent[u.id])  # type: ignore[index]
                for u in subs
            ]
        finally:
            event.remove(app.engine, "before_cursor_execute", listener)
        assert len(statements) <= 4  # history + entries + sources + entry sources
        assert all(results) and results[0] == results[2] and results[1] == results[3]
        # source names work as categories too
        by_source = selector.select(Profile("", ("hf daily",), 3, start, end))
        assert len(by_source) == 3
