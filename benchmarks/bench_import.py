"""Benchmark: import N subscribers from CSV (default 100,000) into a fresh database.

Runs the same code as `digestd subscribers import` (all-or-nothing: checked whole, then
written in committed batches), on a fresh SQLite file and, when DIGESTD_TEST_POSTGRES_URL
is set, on a fresh PostgreSQL schema. Prints rows/s and the peak memory (max RSS) of the process,
plus the export speed. Usage:

    .venv/bin/python benchmarks/bench_import.py [N]
"""

from __future__ import annotations

import csv
import io
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from benchmarks.pg_schema import private_schema_url  # noqa: E402
from digestd.core.config import Settings  # noqa: E402
from digestd.core.context import AppContext  # noqa: E402
from digestd.subscribers.csv_io import COLUMNS  # noqa: E402
from digestd.subscribers.importing import ImportOptions, export, import_file  # noqa: E402

ZONES = ["UTC", "Europe/Berlin", "Asia/Tokyo", "America/New_York", "America/Sao_Paulo"]
CATS = ["cs.CL", "cs.LG", "cs.AI", "cs.CV", "stat.ML"]
TOPICS = ['"KV cache" inference', "retrieval RAG", "interpretability -safety", "", "diffusion"]


def write_csv(path: Path, n: int) -> None:
    """N distinct, valid rows with varied preferences (deterministic)."""
    rnd = random.Random(42)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLUMNS)
        for i in range(n):
            weekly = rnd.random() < 0.3
            w.writerow(
                [
                    f"user{i:07d}@example.org",
                    f"User {i}",
                    rnd.choice(TOPICS),
                    ",".join(rnd.sample(CATS, rnd.randint(0, 2))),
                    f"weekly:{rnd.choice(['mon', 'wed', 'fri'])}" if weekly else "daily",
                    str(rnd.randint(0, 23)),
                    rnd.choice(ZONES),
                    str(rnd.randint(3, 15)),
                    rnd.choice(["html", "text"]),
                    "active",
                ]
            )


def run(label: str, url: str, path: Path, n: int) -> None:
    ctx = AppContext(settings=Settings(database_url=url), actor="bench")
    ctx.migrate()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    report = import_file(ctx, path, ImportOptions(batch_size=1000))
    elapsed = time.perf_counter() - started
    # ru_maxrss is the process's high-water mark (KiB on Linux): tracemalloc would slow
    # the import several times over, so the peak is read from the kernel instead.
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = io.StringIO()
    t0 = time.perf_counter()
    exported = export(ctx, out)
    export_s = time.perf_counter() - t0
    assert report.added == n == exported, (report, exported)
    print(
        f"{label:<10} import {n:>7} rows in {elapsed:6.2f}s = {n / elapsed:8,.0f} rows/s, "
        f"peak RSS {peak_rss / 1024:6.1f} MiB (+{(peak_rss - rss_before) / 1024:.1f} during "
        f"this import) | export {n / export_s:8,.0f} rows/s"
    )
    ctx.dispose()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "subscribers.csv"
        write_csv(path, n)
        print(
            f"{n} rows, {path.stat().st_size / 2**20:.1f} MiB CSV, python {sys.version.split()[0]}"
        )
        run("sqlite", f"sqlite:///{tmp}/bench.db", path, n)
        pg = os.environ.get("DIGESTD_TEST_POSTGRES_URL")
        if not pg:
            print("postgresql skipped (set DIGESTD_TEST_POSTGRES_URL)")
            return
        url, drop = private_schema_url(pg)
        try:
            run("postgresql", url, path, n)
        finally:
            drop()


if __name__ == "__main__":
    main()
