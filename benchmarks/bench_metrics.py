"""Benchmark: what one Prometheus scrape of `/metrics` costs on a big list.

The gauges (subscribers by status, the delivery queue, the oldest due delivery) are read
from the database at scrape time; this measures that read plus the exposition, for N
subscribers with 30 days of daily deliveries each (default N = 10,000, so 300,000 delivery
rows), on a SQLite file and, when DIGESTD_TEST_POSTGRES_URL is set, on a fresh PostgreSQL
schema. Prints the median and worst scrape over R scrapes. Usage:

    .venv/bin/python benchmarks/bench_metrics.py [N] [R]
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from benchmarks.pg_schema import private_schema_url  # noqa: E402
from digestd.core.config import Settings  # noqa: E402
from digestd.core.context import AppContext  # noqa: E402
from digestd.core.models import Delivery, Subscriber  # noqa: E402
from digestd.web.metrics import watch_database  # noqa: E402

DAYS = 30
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
STATUSES = ["active"] * 90 + ["unsubscribed"] * 5 + ["bounced"] * 3 + ["pending", "suspended"]


def fill(ctx: AppContext, n: int) -> int:
    """N subscribers, DAYS deliveries each (old ones sent, today's pending or retrying)."""
    rnd = random.Random(7)
    with ctx.engine.begin() as conn:
        conn.execute(
            insert(Subscriber),
            [
                {"email": f"u{i:07d}@example.org", "status": rnd.choice(STATUSES),
                 "created_at": NOW - timedelta(days=DAYS + 1), "categories": []}
                for i in range(n)
            ],
        )  # fmt: skip
        rows = []
        for day in range(DAYS):
            when = NOW - timedelta(days=DAYS - 1 - day)
            today = day == DAYS - 1
            for sub in range(1, n + 1):
                status = rnd.choice(["pending", "pending", "retry"]) if today else "sent"
                rows.append(
                    {
                        "subscriber_id": sub,
                        "period": when.date().isoformat(),
                        "status": status,
                        "due_at": when,
                        "next_attempt_at": when,
                        "message_id": f"<b.{day}.{sub}@example.org>",
                        "created_at": when,
                    }
                )
            if len(rows) >= 50_000 or today:
                conn.execute(insert(Delivery), rows)
                rows = []
    return n * DAYS


def run(label: str, url: str, n: int, repeats: int) -> None:
    ctx = AppContext(Settings(database_url=url), clock=lambda: NOW)
    ctx.migrate()
    started = time.perf_counter()
    deliveries = fill(ctx, n)
    filled = time.perf_counter() - started
    print(f"{label}: {n:,} subscribers, {deliveries:,} deliveries ({filled:.1f} s to fill)")
    watch_database(ctx)
    ctx.metrics.exposition()  # warm up (connection, statement cache)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        body = ctx.metrics.exposition()
        times.append(time.perf_counter() - t)
    families = {f.name for f in text_string_to_metric_families(body.decode())}
    assert "digestd_oldest_due_delivery_age_seconds" in families
    print(
        f"  scrape: median {statistics.median(times) * 1000:.1f} ms, "
        f"worst {max(times) * 1000:.1f} ms over {repeats} scrapes ({len(body):,} bytes)"
    )
    ctx.dispose()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    with tempfile.TemporaryDirectory() as tmp:
        run("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", n, repeats)
    base = os.environ.get("DIGESTD_TEST_POSTGRES_URL")
    if base:
        url, drop = private_schema_url(base)
        try:
            run("postgresql", url, n, repeats)
        finally:
            drop()


if __name__ == "__main__":
    main()
