"""Claims and leases on real databases: disjoint claims (SKIP LOCKED on PostgreSQL), a dead
worker's rows come back after the lease, a late result cannot overwrite a newer owner's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session, select

from digestd.config import Settings
from digestd.context import AppContext
from digestd.db import make_engine, session_scope
from digestd.deliveries import Outcome, claim, record, release, retry_now
from digestd.models import Delivery
from digestd.planning import plan_due
from digestd.sending import send_due
from digestd.statuses import DeliveryStatus as D
from tests.support.digests import add_subscriber
from tests.support.sending import add_papers
from tests.support.smtp import SmtpTestServer

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

    # Worker a wakes up and reports: its lease is gone, so nothing it says is recorded.
    with session_scope(app.engine) as s:
        record(s, [Outcome(x, D.SENT) for x in a], worker_id="a", now=later)
    assert {d.status for d in rows(app).values()} == {"sending"}
    with session_scope(app.engine) as s:
        record(s, [Outcome(x, D.SENT) for x in c], worker_id="c", now=later)
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
    got = sorted(m.message["Message-ID"] for m in smtp_server.messages)
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
    with session_scope(app.engine) as s:
        assert retry_now(s, NOW, failed=True) == 1
    after = rows(app)
    assert after[claims[0].id].status == "retry" and after[claims[0].id].attempts == 0
    assert after[claims[0].id].next_attempt_at == NOW
    assert after[claims[1].id].next_attempt_at > NOW  # type: ignore[operator]
    assert after[claims[2].id].status == "sent"
