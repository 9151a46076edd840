"""Claims and leases on real databases: disjoint claims (SKIP LOCKED on PostgreSQL), a dead
worker's rows come back after the lease, a late result cannot overwrite a newer owner's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, text
from sqlmodel import Session, select

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import make_engine, refresh_statistics, session_scope
from digestd.core.models import Delivery, Subscriber, table_of
from digestd.core.statuses import DeliveryStatus as D
from digestd.delivery.deliveries import (
    SENT_AFTER_MARGIN,
    Outcome,
    backoff,
    carried_papers,
    claim,
    record,
    release,
    retry_now,
    sent_entry_ids,
)
from digestd.delivery.planning import plan_due
from digestd.delivery.sending import send_due
from tests.support.digests import add_subscriber, record_sent
from tests.support.sending import add_papers
from tests.support.smtp import SmtpTestServer

# About what the database itself does (claims and leases: SKIP LOCKED on PostgreSQL):
# the PostgreSQL twins stay in the quick check (tests/conftest.py).
pytestmark = pytest.mark.backend

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)


def setup(app: AppContext, clock, n: int) -> None:
    clock.set(NOW)
    with session_scope(app.engine) as s:
        for i in range(n):
            add_subscriber(s, f"c{i}@example.org", NOW - timedelta(days=3))
        add_papers(s, NOW - timedelta(hours=1))
    assert plan_due(app).planned == n


def rows(app: AppContext) -> dict[int, Delivery]:
    with session_scope(app.engine) as s:
        return {d.id: d for d in s.exec(select(Delivery))}  # type: ignore[misc]


def test_claims_do_not_overlap_and_expired_leases_come_back(app: AppContext, clock) -> None:
    setup(app, clock, 6)
    with session_scope(app.engine) as s:
        a = claim(s, worker_id="a", limit=4, now=NOW, lease_seconds=60)
    with session_scope(app.engine) as s:
        b = claim(s, worker_id="b", limit=4, now=NOW, lease_seconds=60)
    assert len(a) == 4 and len(b) == 2
    assert not {c.id for c in a} & {c.id for c in b}
    # A claim carries its row's window, aware UTC (read once per distinct value).
    planned = rows(app)
    for c in a + b:
        assert (c.window_start, c.window_end) == (
            planned[c.id].window_start,
            planned[c.id].window_end,
        )
        assert c.window_start.tzinfo is UTC and c.window_start < c.window_end
    assert {d.status for d in rows(app).values()} == {"sending"}

    # Worker a dies. Before the lease ends nothing is released; after, a's rows come back.
    with session_scope(app.engine) as s:
        assert release(s, NOW + timedelta(seconds=59)) == 0
    with session_scope(app.engine) as s:
        assert release(s, NOW + timedelta(seconds=61)) == 6
    later = NOW + timedelta(seconds=61)
    with session_scope(app.engine) as s:
        c = claim(s, worker_id="c", limit=10, now=later, lease_seconds=60)
    assert {x.id for x in c} == {x.id for x in a + b}
    # Same Message-ID on the new attempt; the attempt is counted.
    ids = {x.id: x.message_id for x in a + b}
    assert all(x.message_id == ids[x.id] and x.attempts == 2 for x in c)

    # Worker a wakes up and reports: its lease is gone, so nothing it says is recorded,
    # and `record` says which rows it did not write.
    with session_scope(app.engine) as s:
        unwritten = record(s, [Outcome(x, D.SENT) for x in a], worker_id="a", now=later)
    assert sorted(unwritten) == sorted(x.id for x in a)
    assert {d.status for d in rows(app).values()} == {"sending"}
    with session_scope(app.engine) as s:
        assert record(s, [Outcome(x, D.SENT) for x in c], worker_id="c", now=later) == []
    assert {d.status for d in rows(app).values()} == {"sent"}


def test_skip_locked_lets_replicas_claim_concurrently(postgres_url: str, clock) -> None:
    app = AppContext(settings=Settings(database_url=postgres_url, secret_key="k" * 20), clock=clock)
    app.migrate()
    try:
        setup(app, clock, 10)
        e1, e2 = make_engine(postgres_url), make_engine(postgres_url)
        # Two transactions open at once: the first holds row locks on its claim while the
        # second claims; SKIP LOCKED hands the second the other rows instead of waiting.
        with Session(e1) as s1, Session(e2) as s2:
            first = claim(s1, worker_id="r1", limit=6, now=NOW, lease_seconds=60)
            second = claim(s2, worker_id="r2", limit=6, now=NOW, lease_seconds=60)
            s2.commit()
            s1.commit()
        e1.dispose()
        e2.dispose()
        assert len(first) == 6 and len(second) == 4
        assert not {c.id for c in first} & {c.id for c in second}
    finally:
        app.dispose()


async def test_a_crashed_senders_deliveries_are_sent_once_by_the_next_run(
    app: AppContext, clock, smtp_server: SmtpTestServer
) -> None:
    app.settings = Settings(**{**app.settings.__dict__, "smtp_port": smtp_server.port})
    setup(app, clock, 3)
    with session_scope(app.engine) as s:
        held = claim(s, worker_id="dead", limit=10, now=NOW, lease_seconds=300)
    report = await send_due(app, worker_id="next")
    assert report.sent == 0 and smtp_server.messages == []  # still leased to the dead worker
    clock.advance(seconds=301)
    report = await send_due(app, worker_id="next")
    assert report.released == 3 and report.sent == 3
    got = sorted(m.message_id for m in smtp_server.messages)
    assert got == sorted(c.message_id for c in held)


def test_retry_failed_only_touches_failed(app: AppContext, clock) -> None:
    setup(app, clock, 3)
    with session_scope(app.engine) as s:
        claims = claim(s, worker_id="w", limit=3, now=NOW, lease_seconds=60)
        record(
            s,
            [
                Outcome(claims[0], D.FAILED, "550 5.7.1 rejected"),
                Outcome(claims[1], D.RETRY, "451 later"),
                Outcome(claims[2], D.SENT),
            ],
            worker_id="w",
            now=NOW,
        )
    # What was written, read back (the outcomes go through the driver's executemany).
    before = rows(app)
    assert before[claims[0].id].error == "550 5.7.1 rejected"
    assert before[claims[1].id].status == "retry" and before[claims[1].id].error == "451 later"
    assert before[claims[1].id].next_attempt_at == NOW + backoff(1)
    assert before[claims[2].id].sent_at == NOW and before[claims[2].id].error is None
    assert all(d.claimed_by is None and d.lease_until is None for d in before.values())
    with session_scope(app.engine) as s:
        assert retry_now(s, NOW, failed=True) == 1
    after = rows(app)
    assert after[claims[0].id].status == "retry" and after[claims[0].id].attempts == 0
    assert after[claims[0].id].next_attempt_at == NOW
    assert after[claims[1].id].next_attempt_at > NOW  # type: ignore[operator]
    assert after[claims[2].id].status == "sent"


def test_timestamps_written_in_bulk_match_in_sql_as_any_other(app: AppContext, clock) -> None:
    """Planning and recording write through the driver's executemany; their timestamps must
    be stored as every other statement writes them (on SQLite: one text form), or SQL's
    comparisons of equal instants disagree (`sent_at = ?` found nothing for a whole
    second: '12:00:00' against '12:00:00.000000')."""
    setup(app, clock, 2)  # planned at NOW, a whole second
    with session_scope(app.engine) as s:
        claims = claim(s, worker_id="w", limit=2, now=NOW, lease_seconds=60)
        record(
            s,
            [Outcome(claims[0], D.SENT), Outcome(claims[1], D.RETRY, "451 later")],
            worker_id="w",
            now=NOW,
        )
    t = table_of(Delivery)
    due = {d.due_at for d in rows(app).values()}
    with app.engine.connect() as conn:

        def count(*where) -> int:
            return conn.execute(select(func.count()).select_from(t).where(*where)).scalar_one()

        assert count(t.c.created_at == NOW) == 2
        assert sum(count(t.c.due_at == d) for d in due) == 2
        assert count(t.c.sent_at == NOW) == 1
        assert count(t.c.next_attempt_at == NOW + backoff(1)) == 1


def test_never_twice_finds_every_sent_paper_a_window_could_offer_again(
    app: AppContext, clock
) -> None:
    """`sent_entry_ids(since=…)` reads only deliveries sent after the window's start (a
    paper is sent after it is ingested), with a margin for replicas' clocks."""
    clock.set(NOW)
    since = NOW - timedelta(days=1)
    with session_scope(app.engine) as s:
        sub = add_subscriber(s, "h@example.org", NOW - timedelta(days=60))
        other = add_subscriber(s, "o@example.org", NOW - timedelta(days=60))
        # A long history: 30 daily digests of papers from before the window.
        old = []
        for day in range(30, 1, -1):
            sent_on = NOW - timedelta(days=day)
            papers = add_papers(s, sent_on - timedelta(hours=2), 2, tag=f"old{day}")
            old += papers
            record_sent(
                s,
                sub,
                papers,
                period=f"d{day}",
                window_start=sent_on - timedelta(days=1),
                window_end=sent_on,
            )
        fresh = add_papers(s, since + timedelta(minutes=5), 3, tag="fresh")
        # Sent by a replica whose clock is 30 minutes behind: before `since` by its clock.
        skewed = record_sent(
            s,
            sub,
            fresh[:1],
            period="skew",
            window_start=since - timedelta(days=1),
            window_end=since - timedelta(minutes=30),
        )
        failed = record_sent(
            s, sub, fresh[1:2], period="f", window_start=since, window_end=NOW, status="failed"
        )
        record_sent(s, other, fresh[2:], period="o", window_start=since, window_end=NOW)
        got = sent_entry_ids(s, [sub.id, other.id], since=since)  # type: ignore[list-item]
    assert timedelta(minutes=30) < SENT_AFTER_MARGIN
    assert skewed.sent_at is not None and failed.sent_at is None
    assert fresh[0].id in got[sub.id]  # type: ignore[index]
    assert fresh[1].id not in got[sub.id]  # type: ignore[index]  # failed: not sent
    assert got[other.id] == {fresh[2].id}  # type: ignore[index]
    # The old digests are not read: their papers were ingested long before the window.
    assert not {e.id for e in old} & got[sub.id]  # type: ignore[index]
    with session_scope(app.engine) as s:  # without `since`: the whole history
        whole = sent_entry_ids(s, [sub.id])[sub.id]  # type: ignore[list-item]
    assert {e.id for e in old} | {fresh[0].id} == whole


def test_missing_postgres_statistics_are_gathered_once(postgres_url: str, clock) -> None:
    """A table filled at once (a CSV import before a send hour) gets statistics before the
    batch queries are planned; a fresh one is not analyzed again."""
    app = AppContext(settings=Settings(database_url=postgres_url, secret_key="k" * 20), clock=clock)
    app.migrate()
    try:
        with session_scope(app.engine) as s:
            s.execute(
                insert(table_of(Subscriber)),
                [
                    {"email": f"bulk{i}@example.org", "status": "active", "created_at": NOW}
                    for i in range(3000)
                ],
            )
            # Counters reach the statistics view when a transaction ends, at most once a
            # second per backend: make this one's arrive with its commit.
            s.execute(text("SELECT pg_stat_force_next_flush()"))
        assert refresh_statistics(app.engine, ["subscriber", "delivery"]) == ["subscriber"]
        with app.engine.connect() as conn:
            analyzed, rows = conn.execute(
                text(
                    "SELECT s.last_analyze IS NOT NULL, c.reltuples FROM pg_stat_user_tables s"
                    " JOIN pg_class c ON c.oid = s.relid WHERE s.relid = to_regclass('subscriber')"
                )
            ).one()
        assert analyzed and rows == 3000
        assert refresh_statistics(app.engine, ["subscriber", "delivery"]) == []
        assert refresh_statistics(make_engine("sqlite://"), ["subscriber"]) == []
    finally:
        app.dispose()


def test_a_hand_edited_paper_list_is_read_around_with_one_warning(
    app: AppContext, clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Only digestd writes `entry_ids`; a value edited by hand must not stop a send pass or
    `deliveries show`: the parts that are paper ids are kept, the rest named in a warning."""
    clock.set(NOW)
    with session_scope(app.engine) as s:
        sub = add_subscriber(s, "e@example.org", NOW - timedelta(days=3))
        papers = add_papers(s, NOW - timedelta(hours=2), 3, tag="edit")
        d = record_sent(
            s, sub, papers, period="p", window_start=NOW - timedelta(days=1), window_end=NOW
        )
        d.entry_ids = f"{papers[0].id},oops,{papers[2].id}"
    with session_scope(app.engine) as s:
        got = sent_entry_ids(s, [sub.id])[sub.id]  # type: ignore[list-item]
        shown = carried_papers(s, d.id)  # type: ignore[arg-type]
    assert got == {papers[0].id, papers[2].id}
    assert [p.entry_id for p in shown] == [papers[0].id, papers[2].id]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings and all(f"delivery {d.id}" in w and "oops" in w for w in warnings)
