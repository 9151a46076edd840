"""Fetching over real HTTP (a threaded server on 127.0.0.1): conditional GET, limits, failures."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import func, select

from digestd import __version__
from digestd.core.db import session_scope
from digestd.core.models import Entry, EntrySource, Source
from digestd.ingest import run as ingest_run
from digestd.ingest.run import fetch_sources
from digestd.ingest.sources import add_source
from tests.support.feeds import FeedServer, Reply, feed_server, fixture_bytes, ingest_context

ARXIV_RSS = "arxiv-rss/current/rss_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24_trimmed.xml"
HF_JSON = "hf-daily-papers/api/daily_papers_2026-07-31_pretty.json"


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with feed_server() as srv:
        yield srv


# Never reached by a local fetch, however loaded the machine: only the test of the timeout
# itself (below) sets a short one, with a server that never answers.
FETCH_TIMEOUT = 60.0
SHORT_TIMEOUT = 0.2


@pytest.fixture
def ctx(db_url: str, clock: Any) -> Iterator[Any]:
    with ingest_context(
        db_url, clock, fetch_timeout=FETCH_TIMEOUT, fetch_max_bytes=64 * 1024
    ) as app:
        yield app


def add(ctx: Any, url: str, **kw: Any) -> int:
    # The feed server runs on 127.0.0.1: the source must be allowed private addresses.
    kw.setdefault("allow_private", True)
    with session_scope(ctx.engine) as session:
        return add_source(session, url, now=ctx.now(), **kw).id  # type: ignore[return-value]


def source(ctx: Any, source_id: int) -> Source:
    with session_scope(ctx.engine) as session:
        row = session.get(Source, source_id)
        assert row is not None
        return row


def snapshot(ctx: Any) -> list[tuple[Any, ...]]:
    with session_scope(ctx.engine) as session:
        entries = session.exec(select(Entry).order_by(Entry.id)).all()
        links = session.exec(select(func.count()).select_from(EntrySource)).one()
        return [
            (e.id, e.canonical_key, e.title, e.version, e.upvotes, e.summary) for e in entries
        ] + [("links", links)]


def count_parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts calls into the parser (a spy: the real parser still runs)."""
    calls = [0]
    real = ingest_run.parse_document

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest_run, "parse_document", spy)
    return calls


def test_etag_makes_the_second_fetch_a_304_without_parsing(
    ctx: Any, server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = server.serve("/rss", Reply(body=fixture_bytes(ARXIV_RSS), etag='"v1"', gzip=True))
    sid = add(ctx, url)
    parses = count_parses(monkeypatch)

    [first] = asyncio.run(fetch_sources(ctx))
    assert (first.status, first.new, first.kind) == ("ok", 4, "rss")
    before = snapshot(ctx)

    [second] = asyncio.run(fetch_sources(ctx))
    assert second.status == "not_modified" and second.new == second.updated == 0
    assert parses[0] == 1  # the 304 was not parsed
    assert server.not_modified == 1
    hits = server.hits("/rss")
    assert hits[1].headers["If-None-Match"] == '"v1"'
    assert hits[0].headers["User-Agent"] == f"digestd/{__version__} (+{ctx.settings.base_url})"
    assert "gzip" in hits[0].headers["Accept-Encoding"]
    assert snapshot(ctx) == before
    row = source(ctx, sid)
    assert row.last_status == "not_modified" and row.etag == '"v1"' and row.failures == 0


def test_last_modified_makes_the_second_fetch_a_304(
    ctx: Any, server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    stamp = "Thu, 24 Sep 2026 08:58:05 GMT"
    url = server.serve("/hf", Reply(body=fixture_bytes(HF_JSON), last_modified=stamp,
                                    content_type="application/json"))  # fmt: skip
    add(ctx, url)
    parses = count_parses(monkeypatch)
    [first] = asyncio.run(fetch_sources(ctx))
    assert (first.status, first.new, first.kind) == ("ok", 5, "hf_daily")
    [second] = asyncio.run(fetch_sources(ctx))
    assert second.status == "not_modified" and parses[0] == 1
    assert server.hits("/hf")[1].headers["If-Modified-Since"] == stamp


def test_each_failure_is_that_sources_own_with_backoff(ctx: Any, server: FeedServer) -> None:
    garbage = random.Random(7).randbytes(4000)
    big = b"<rss version='2.0'><channel>" + b"<!-- padding -->" * 6000 + b"</channel></rss>"
    good = add(ctx, server.serve("/good", Reply(body=fixture_bytes(ARXIV_RSS))))
    failing = {
        add(ctx, server.serve("/500", Reply(status=500, body=b"boom"))): "HTTP 500",
        add(ctx, server.serve("/big", Reply(body=big))): (
            "response too large (96044 bytes, limit 65536)"
        ),
        add(ctx, server.serve("/big-stream", Reply(body=big, send_length=False))): (
            "response too large (over 65536 bytes)"
        ),
        add(ctx, server.serve("/loop", Reply(redirect_to="/loop"))): "too many redirects",
        add(ctx, server.serve("/garbage", Reply(body=garbage))): "not a",
        add(ctx, server.serve("/api-error", Reply(body=fixture_bytes(
            "arxiv-api/current/arxiv.py-golden/id_abc_s0_m100_b79c8dcf6bc3.body.xml")))): (
            "arXiv API error: incorrect id format for abc"
        ),
    }  # fmt: skip
    start = ctx.now()
    reports = {r.source_id: r for r in asyncio.run(fetch_sources(ctx))}

    assert (reports[good].status, reports[good].new) == ("ok", 4)
    for sid, message in failing.items():
        report = reports[sid]
        assert report.status == "error" and report.failed
        assert message in (report.error or ""), (sid, report.error)
        row = source(ctx, sid)
        assert row.last_status == "error" and row.failures == 1
        assert row.last_error == report.error
        assert row.next_fetch_at == start + timedelta(hours=2)  # 60 min × 2¹
    assert len(server.hits("/loop")) == 6  # the first request and 5 redirects, then it stops

    # A second failing run backs off further; the healthy source stays on its interval.
    ctx.clock.advance(hours=3)
    again = {r.source_id: r for r in asyncio.run(fetch_sources(ctx, only_due=True))}
    assert (again[good].status, again[good].unchanged) == ("ok", 4)
    url500 = next(sid for sid, m in failing.items() if m == "HTTP 500")
    assert source(ctx, url500).failures == 2
    assert source(ctx, url500).next_fetch_at == ctx.now() + timedelta(hours=4)
    assert source(ctx, good).failures == 0


def test_a_server_that_never_answers_times_out_as_that_sources_failure(
    db_url: str, clock: Any, server: FeedServer
) -> None:
    """A source whose server holds the reply fails with the timeout, backs off, and does not
    hold up the pass (the reply comes only after the pass is over). Alone in its pass, so a
    short timeout cannot catch a healthy fetch on a loaded machine."""
    slow = threading.Event()
    with ingest_context(db_url, clock, fetch_timeout=SHORT_TIMEOUT) as ctx:
        sid = add(ctx, server.serve("/slow", Reply(body=fixture_bytes(ARXIV_RSS), hold=slow)))
        start = ctx.now()
        [report] = asyncio.run(fetch_sources(ctx))
        slow.set()
        assert report.source_id == sid and report.status == "error" and report.failed
        assert report.error == f"timed out after {SHORT_TIMEOUT:g}s"
        row = source(ctx, sid)
        assert row.last_status == "error" and row.failures == 1
        assert row.last_error == report.error
        assert row.next_fetch_at == start + timedelta(hours=2)  # 60 min × 2¹


@pytest.mark.backend  # a fetch's records on its source on PostgreSQL
def test_a_failed_fetch_leaves_earlier_entries_untouched(ctx: Any, server: FeedServer) -> None:
    url = server.serve("/feed", Reply(body=fixture_bytes(ARXIV_RSS), etag='"a"'))
    sid = add(ctx, url)
    asyncio.run(fetch_sources(ctx))
    before = snapshot(ctx)
    for broken in (Reply(status=503), Reply(body=b"\x00\x01\x02 not xml"), Reply(body=b"")):
        server.serve("/feed", broken)
        [report] = asyncio.run(fetch_sources(ctx))
        assert report.status == "error"
        assert snapshot(ctx) == before
    row = source(ctx, sid)
    assert row.failures == 3 and row.etag == '"a"'  # validators of the last good copy are kept
    server.serve("/feed", Reply(body=fixture_bytes(ARXIV_RSS), etag='"a"'))
    [report] = asyncio.run(fetch_sources(ctx))
    assert report.status == "not_modified" and source(ctx, sid).failures == 0


def test_a_truncated_feed_keeps_what_parsed_soundly(ctx: Any, server: FeedServer) -> None:
    body = fixture_bytes(ARXIV_RSS)
    cut = body[: body.rfind(b"<item>") + 400]  # the download stops inside the 4th item
    sid = add(ctx, server.serve("/cut", Reply(body=cut)))
    [report] = asyncio.run(fetch_sources(ctx))
    assert (report.status, report.new, report.rejected) == ("partial", 3, 1)
    assert report.error is None and "item 4: cut off" in (report.note or "")
    row = source(ctx, sid)
    assert row.failures == 0 and row.last_counts == {
        "new": 3, "updated": 0, "unchanged": 0, "rejected": 1
    }  # fmt: skip
    assert "not well-formed" in (row.last_error or "")
    assert "item 4: cut off" in (row.last_error or "")


@pytest.mark.parametrize(
    "rel",
    ["arxiv-rss/current/rss_cs.CL_2026-08-01_weekend-empty.xml",
     "arxiv-api/current/arxiv.py-golden/id_0000.0000_s0_m100_8b51d9633a68.body.xml"],
)  # fmt: skip
def test_an_empty_feed_is_healthy(ctx: Any, server: FeedServer, rel: str) -> None:
    sid = add(ctx, server.serve("/empty", Reply(body=fixture_bytes(rel))))
    [report] = asyncio.run(fetch_sources(ctx))
    assert report.status == "ok" and report.new == 0
    row = source(ctx, sid)
    assert row.failures == 0 and row.last_error is None
    assert row.next_fetch_at == ctx.now() + timedelta(minutes=60)


def test_fetches_run_concurrently_up_to_the_bound(db_url: str, clock: Any) -> None:
    release = threading.Event()
    with feed_server() as server, ingest_context(db_url, clock, fetch_concurrency=2) as ctx:
        for n in range(5):
            add(ctx, server.serve(f"/f{n}", Reply(body=fixture_bytes(ARXIV_RSS), hold=release)))

        async def scenario() -> list[Any]:
            task = asyncio.create_task(fetch_sources(ctx))
            for _ in range(500):  # bounded wait for the first two requests to arrive
                if server.in_flight >= 2:
                    break
                await asyncio.sleep(0.01)
            release.set()
            return await task

        reports = asyncio.run(scenario())
    assert [r.status for r in reports] == ["ok"] * 5
    # The same four papers from five sources: stored once, by whichever source came first.
    assert (sum(r.new for r in reports), sum(r.unchanged for r in reports)) == (4, 16)
    assert server.max_in_flight == 2
