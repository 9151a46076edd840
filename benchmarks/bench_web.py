"""The public pages under load: `GET /` and `GET /feed.xml` with N papers in the window
(prints figures; not a test).

    .venv/bin/python benchmarks/bench_web.py [--papers 500] [--requests 2000] [--seconds 10]

1. Setup (not timed): a fresh SQLite file with N papers ingested over the last 23 hours
   (varied upvotes, authors, abstracts, code links) from the seed papers.
2. ASGI (in process, httpx.ASGITransport, one request at a time): per path, the first
   request (validators + papers query + render), a render on every request (cache
   cleared: what a page costs when its data changes all the time), plain GETs served from
   the page cache, and revalidations answered 304. Requests/s and p50/p99 latency.
3. The real server: `digestd web` in a subprocess (uvicorn, one worker) measured with
   `wrk` (Debian package `wrk`: `apt-get install wrk`; skipped with a note when missing),
   plain GETs and 304 revalidations, 2 threads and 32 connections.

Prints the load average before and after: the machine may be shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from digestd.core.config import Settings  # noqa: E402
from digestd.core.context import AppContext  # noqa: E402
from digestd.core.db import session_scope  # noqa: E402
from digestd.core.models import Entry, Source  # noqa: E402
from digestd.web import create_app  # noqa: E402

PATHS = ("/", "/feed.xml")


def make_papers(ctx: AppContext, n: int, now: datetime, rng: random.Random) -> None:
    seed = json.loads((REPO / "seeds" / "trending-papers.json").read_text(encoding="utf-8"))
    items = seed["items"]
    with session_scope(ctx.engine) as s:
        source = Source(url="https://huggingface.co/api/daily_papers", name="HF", created_at=now)
        s.add(source)
        s.flush()
        for i in range(n):
            a, b = rng.choice(items), rng.choice(items)
            words = a["title"].split()
            cut = rng.randint(2, max(2, len(words) - 1))
            sentences = (a["content_text"] + " " + b["content_text"]).split(". ")
            rng.shuffle(sentences)
            when = now - timedelta(hours=rng.uniform(0.1, 23))
            s.add(
                Entry(
                    source_id=source.id,
                    canonical_key=f"arxiv:2611.{i:05d}",
                    url=f"https://arxiv.org/abs/2611.{i:05d}",
                    title=" ".join(words[:cut] + b["title"].split()[cut // 2 :]),
                    summary=". ".join(sentences[:10]) + ".",
                    authors=[f"Author {k}" for k in range(rng.randint(1, 12))],
                    categories=rng.sample(["cs.CL", "cs.LG", "cs.AI", "cs.CV"], 2),
                    upvotes=rng.randint(0, 300),
                    code_url=f"https://github.com/example/p{i}" if rng.random() < 0.4 else None,
                    published_at=when,
                    ingested_at=when,
                )
            )


def summary(label: str, latencies: list[float], elapsed: float) -> str:
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (
        f"  {label:<28} {len(ms) / elapsed:8.0f} req/s   p50 {statistics.median(ms):6.2f} ms"
        f"   p99 {p99:6.2f} ms   (n={len(ms)})"
    )


async def asgi(ctx: AppContext, requests: int) -> None:
    app = create_app(ctx)
    cache = app.state.web.pages
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        for path in PATHS:
            t0 = time.perf_counter()
            first = await client.get(path)
            cold = time.perf_counter() - t0
            assert first.status_code == 200, first.status_code
            print(f"{path}  ({len(first.content) / 1024:.0f} KiB)")
            print(f"  first request (query + render) {cold * 1000:8.1f} ms")
            modes = {
                "render every time": ({}, True),
                "cached 200": ({}, False),
                "304 revalidation": ({"If-None-Match": first.headers["etag"]}, False),
            }
            for label, (headers, clear) in modes.items():
                n = requests if not clear else max(50, requests // 10)
                latencies = []
                renders = cache.renders
                start = time.perf_counter()
                for _ in range(n):
                    if clear:
                        cache._bodies.clear()
                    t = time.perf_counter()
                    response = await client.get(path, headers=headers)
                    latencies.append(time.perf_counter() - t)
                    assert response.status_code in (200, 304)
                elapsed = time.perf_counter() - start
                print(summary(label, latencies, elapsed) + f"  renders {cache.renders - renders}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wrk(url: str, seconds: int, header: str | None = None) -> str:
    cmd = ["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency", url]
    if header:
        cmd[1:1] = ["-H", header]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"99%\s+([\d.]+\w+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return (
        f"{float(rps.group(1)) if rps else 0:8.0f} req/s   p99 {p99.group(1) if p99 else '?'}"
        + (f"   non-2xx/3xx {errors.group(1)}" if errors else "")
    )


def real_server(db_url: str, seconds: int) -> None:
    if shutil.which("wrk") is None:
        print("wrk not found: install the Debian package (apt-get install wrk) for these figures")
        return
    port = free_port()
    env = {
        **os.environ,
        "DIGESTD_DATABASE_URL": db_url,
        "DIGESTD_LISTEN": f"127.0.0.1:{port}",
        "DIGESTD_BASE_URL": f"http://127.0.0.1:{port}",
        "DIGESTD_SECRET_KEY": "bench-secret-key-0123456789",
        "DIGESTD_LOG_LEVEL": "warning",
    }
    digestd = str(Path(sys.executable).with_name("digestd"))
    proc = subprocess.Popen([digestd, "web"], env=env, stdout=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):  # bounded wait for the server to answer
            try:
                first = {p: httpx.get(base + p, timeout=2) for p in PATHS}
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise RuntimeError("digestd web did not start")
        print(f"digestd web (uvicorn, 1 process) + wrk -t2 -c32 -d{seconds}s")
        for path in PATHS:
            print(f"  GET {path:<10} cached 200      {wrk(base + path, seconds)}")
            etag = first[path].headers["etag"]
            print(
                f"  GET {path:<10} 304 (If-None-Match) "
                f"{wrk(base + path, seconds, f'If-None-Match: {etag}')}"
            )
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=500)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite:///{tmp}/bench.db"
        now = datetime.now(UTC)
        ctx = AppContext(Settings(database_url=db_url, secret_key="bench-secret-key-0123456789"))
        ctx.migrate()
        make_papers(ctx, args.papers, now, random.Random(7))
        print(f"{args.papers} papers in the window (SQLite), python {sys.version.split()[0]}")
        print("ASGI in process (httpx.ASGITransport, sequential)")
        asyncio.run(asgi(ctx, args.requests))
        ctx.dispose()
        real_server(db_url, args.seconds)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
