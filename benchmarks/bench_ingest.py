"""Ingestion benchmark: a generated 5,000-entry arXiv-style RSS feed served over local HTTP.

Prints, for SQLite (always) and PostgreSQL (when DIGESTD_TEST_POSTGRES_URL is set):
first ingest (entries/s, with the parse-only share), a re-ingest of the same items with a
changed ETag (full parse, every item unchanged), the unchanged refetch (a 304), and peak
Python memory of the first ingest (tracemalloc, in a separate run so it does not slow the
timed one). Run: `.venv/bin/python benchmarks/bench_ingest.py [--entries N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from benchmarks.pg_schema import private_schema_url  # noqa: E402
from digestd.core.config import Settings  # noqa: E402
from digestd.core.context import AppContext  # noqa: E402
from digestd.core.db import session_scope  # noqa: E402
from digestd.ingest.detect import parse_document  # noqa: E402
from digestd.ingest.run import fetch_sources  # noqa: E402
from digestd.ingest.sources import add_source  # noqa: E402
from tests.support.feeds import Reply, feed_server  # noqa: E402

WORDS = [
    "attention",
    "transformer",
    "sparse",
    "retrieval",
    "diffusion",
    "agent",
    "benchmark",
    "kernel",
    "latent",
    "graph",
    "language",
    "vision",
    "policy",
    "reward",
    "alignment",
    "scaling",
    "token",
    "memory",
    "cache",
    "quantization",
    "robust",
    "causal",
    "inference",
    "federated",
    "contrastive",
    "embedding",
    "spectral",
    "optimizer",
    "gradient",
]
CATEGORIES = ["cs.LG", "cs.AI", "cs.CL", "cs.CV", "stat.ML", "cs.RO", "cs.IR"]


def generate_feed(n: int, seed: int = 5) -> bytes:
    """An RSS 2.0 document in rss.arxiv.org's current layout with n items."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        aid = f"2611.{10000 + i:05d}"
        title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))).capitalize()
        abstract = " ".join(rng.choice(WORDS) for _ in range(rng.randint(120, 220)))
        cats = rng.sample(CATEGORIES, rng.randint(1, 3))
        authors = ", ".join(
            f"Author{rng.randint(1, 9999)} Name{j}" for j in range(rng.randint(1, 8))
        )
        announce = rng.choice(["new", "new", "new", "cross", "replace"])
        version = 1 if announce == "new" else rng.randint(1, 4)
        items.append(
            f"""<item><title>{title}</title><link>https://arxiv.org/abs/{aid}</link>
<description>arXiv:{aid}v{version} Announce Type: {announce} 
Abstract: {abstract} Code: https://github.com/lab{i}/repo{i}.</description>
<guid isPermaLink="false">oai:arXiv.org:{aid}v{version}</guid>
{"".join(f"<category>{c}</category>" for c in cats)}
<pubDate>Thu, 26 Nov 2026 00:00:00 -0500</pubDate>
<arxiv:announce_type>{announce}</arxiv:announce_type>
<dc:rights>http://creativecommons.org/licenses/by/4.0/</dc:rights>
<dc:creator>{authors}</dc:creator></item>"""
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss xmlns:arxiv="http://arxiv.org/schemas/atom"'
        ' xmlns:dc="http://purl.org/dc/elements/1.1/" version="2.0"><channel>'
        "<title>cs updates on arXiv.org</title><link>http://rss.arxiv.org/rss/cs</link>"
        "<description>generated</description>" + "\n".join(items) + "</channel></rss>"
    ).encode()


def _context(url: str) -> AppContext:
    settings = Settings(database_url=url, fetch_max_bytes=200 * 1024 * 1024, fetch_timeout=300.0)
    ctx = AppContext(settings=settings, clock=lambda: datetime.now(UTC))
    ctx.migrate()
    return ctx


def _one_ingest(url: str, feed_url: str) -> tuple[AppContext, int, float]:
    ctx = _context(url)
    with session_scope(ctx.engine) as session:
        sid = add_source(session, feed_url, now=ctx.now(), allow_private=True).id or 0
    started = time.perf_counter()
    [report] = asyncio.run(fetch_sources(ctx, [sid]))
    elapsed = time.perf_counter() - started
    assert report.status == "ok", report
    return ctx, report.new, elapsed


def bench(label: str, make_url: Any, body: bytes) -> None:
    with feed_server() as server:
        feed_url = server.serve("/feed", Reply(body=body, etag='"v1"'))

        url, cleanup = make_url()
        ctx, new, first = _one_ingest(url, feed_url)

        server.serve("/feed", Reply(body=body, etag='"v2"'))  # same items, new validator
        started = time.perf_counter()
        [again] = asyncio.run(fetch_sources(ctx))
        reparse = time.perf_counter() - started

        started = time.perf_counter()
        [cached] = asyncio.run(fetch_sources(ctx))
        not_modified = time.perf_counter() - started
        ctx.dispose()
        cleanup()

        url, cleanup = make_url()
        tracemalloc.start()
        mem_ctx, _, _ = _one_ingest(url, feed_url)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        mem_ctx.dispose()
        cleanup()

    print(f"{label}: first ingest {new} entries in {first:.2f} s → {new / first:,.0f} entries/s")
    print(
        f"{label}: re-ingest, same items, new ETag: {reparse:.2f} s "
        f"({again.unchanged} unchanged, {again.updated} updated, {again.new} new)"
    )
    print(f"{label}: unchanged refetch: {cached.status} in {not_modified * 1000:.1f} ms")
    print(f"{label}: peak Python memory during first ingest (tracemalloc): {peak / 2**20:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=5000)
    args = parser.parse_args()
    body = generate_feed(args.entries)
    started = time.perf_counter()
    parsed = parse_document(body, {"Content-Type": "application/rss+xml"})
    parse_only = time.perf_counter() - started
    print(
        f"feed: {args.entries} items, {len(body) / 2**20:.1f} MB; "
        f"parse only (feedparser): {parse_only:.2f} s for {len(parsed.items)} items"
    )

    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    counter = iter(range(100))

    def sqlite_url() -> tuple[str, Any]:
        return f"sqlite:///{tmp / f'bench{next(counter)}.db'}", lambda: None

    bench("sqlite", sqlite_url, body)
    pg = os.environ.get("DIGESTD_TEST_POSTGRES_URL")
    if pg:
        bench("postgres", lambda: private_schema_url(pg), body)
    else:
        print("postgres: skipped (set DIGESTD_TEST_POSTGRES_URL)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process peak RSS (ru_maxrss, whole run): {rss:.0f} MB")


if __name__ == "__main__":
    main()
