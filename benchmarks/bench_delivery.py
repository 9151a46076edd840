"""End-to-end delivery throughput against the SMTP floor (prints figures; not a test).

    .venv/bin/python benchmarks/bench_delivery.py --subscribers 100000 --profiles 1000 \\
        --entries 500 --connections 4

1. Starts `benchmarks/smtp_sink.py` in its own process on 127.0.0.1 (counts and discards).
2. Setup (not timed as delivery): a fresh SQLite file (or --database-url), N active
   subscribers spread over P distinct preference profiles, a JSON Feed of E papers.
3. End to end (timed): ingest the feed, plan every subscriber, then select, render and
   send through the daemon's own send path (`send_due`) over C pooled connections.
4. Floor (timed): the same number of pre-built messages of the same average size, over
   the same number of connections, to the same sink, with the same client library.

Prints messages/s end to end, the floor's messages/s, their ratio, per-phase times and
peak memory (ru_maxrss of this process: an upper bound, it includes setup).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiosmtplib  # noqa: E402

# ---- the sink process --------------------------------------------------------------------


@dataclass
class Sink:
    proc: subprocess.Popen[str]
    port: int

    def command(self, cmd: str) -> tuple[int, int]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        messages, size = self.proc.stdout.readline().split()
        return int(messages), int(size)

    def stop(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_sink() -> Sink:
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "benchmarks" / "smtp_sink.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout
    line = proc.stdout.readline().split()
    if not line or line[0] != "READY":
        proc.kill()
        raise SystemExit("smtp sink did not start")
    return Sink(proc, int(line[1]))


# ---- the floor ---------------------------------------------------------------------------


def build_raw_message(i: int, size: int) -> bytes:
    """One pre-built message of about `size` bytes (headers + a quoted-printable-safe body)."""
    head = (
        f"From: digestd <digest@localhost>\r\nTo: reader{i}@example.org\r\n"
        f"Subject: Your digest {i}\r\nMessage-ID: <floor.{i}@digestd.local>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    ).encode()
    line = b"Trending papers in your inbox, rendered once per profile and sent.\r\n"
    body = (line * (max(0, size - len(head)) // len(line) + 1))[: max(0, size - len(head))]
    return head + body


async def floor(port: int, count: int, size: int, connections: int) -> float:
    """Seconds to push `count` pre-built messages over `connections` reused connections."""
    distinct = [build_raw_message(i, size) for i in range(min(count, 256))]
    remaining = iter(range(count))

    async def worker() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30)
        await client.connect()
        try:
            for i in remaining:  # shared iterator: each message goes to exactly one worker
                await client.sendmail(
                    "digest@localhost", [f"reader{i}@example.org"], distinct[i % len(distinct)]
                )
        finally:
            await client.quit()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - started


# ---- report ------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        mem = f"{mem_kb / 1024 / 1024:.1f} GB"
    except (OSError, StopIteration):
        mem = "unknown memory"
    return f"{os.cpu_count()} CPUs ({cpu}), {mem}, Python {sys.version.split()[0]}"


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10000)
    parser.add_argument("--profiles", type=int, default=100)
    parser.add_argument("--entries", type=int, default=500)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--floor-only", action="store_true", help="measure only the floor")
    parser.add_argument("--message-size", type=int, default=20000, help="floor-only size")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()

    print(f"machine: {machine()}")
    sink = start_sink()
    figures: dict[str, float | int | str] = {}
    try:
        count, size = args.subscribers, args.message_size
        if not args.floor_only:
            with tempfile.TemporaryDirectory(prefix="digestd-bench-") as tmp:
                from benchmarks.pipeline import end_to_end  # type: ignore[import-not-found]

                e2e = end_to_end(args, sink, Path(tmp))
            figures.update(e2e)
            count = int(e2e["messages"])
            size = int(e2e["avg_message_bytes"])
        sink.command("reset")
        seconds = asyncio.run(floor(sink.port, count, size, args.connections))
        got, _ = sink.command("count")
        assert got == count, f"floor: sink received {got} of {count}"
        figures["floor_messages"] = count
        figures["floor_seconds"] = round(seconds, 2)
        figures["floor_msgs_per_s"] = round(count / seconds, 1)
        if "e2e_msgs_per_s" in figures:
            figures["ratio"] = round(
                float(figures["e2e_msgs_per_s"]) / float(figures["floor_msgs_per_s"]), 3
            )
        figures["peak_rss_mb"] = round(peak_rss_mb(), 1)
    finally:
        sink.stop()
    for key, value in figures.items():
        print(f"{key:>24}: {value}")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
