"""End-to-end delivery throughput against the SMTP floor (prints figures; not a test).

    .venv/bin/python benchmarks/bench_delivery.py --subscribers 100000 --profiles 1000 \\
        --entries 500 --connections 4

1. Starts `benchmarks/smtp_sink.py` in its own process on 127.0.0.1 (counts and discards).
2. Setup (not timed, in a child process): a fresh SQLite file (or --database-url), N active
   subscribers spread over P distinct preference profiles, a JSON Feed of E papers.
3. End to end (timed): ingest the feed, plan every subscriber, then select, render and
   send through the daemon's own send path (`send_due`) over C pooled connections.
4. Floor (timed): as many pre-built messages: the end-to-end run's own first 256, as the
   sink received them, round robin (same sizes, same lines: the sink's work per message
   grows with its lines), over the same number of connections, to the same sink, with the
   same call send_due makes (`digestd.mail.smtp_pool.transmit` on aiosmtplib connections,
   messages in wire form). `--other-floors` also times synthetic messages of the same
   average size (the floor before 2026-11-30: fewer, longer lines), with that call and
   with aiosmtplib's own `sendmail` (what send_due used before), up to 20,000 each.

Prints messages/s end to end, the floor's messages/s, their ratio, per-phase times and
peak memory (ru_maxrss of this process): `peak_rss_mb_after_send` is the delivery's (imports,
ingest, plan, send), `peak_rss_mb` also covers the floor that runs after it.

Votes ("more / less like this", issue 12): `--voters 0.1` gives 10 % of the subscribers
5–20 votes each (`--votes-per-voter 5-20`; 70 % up, up to 60 days old) on 300 earlier papers
(seed texts, ingested before the window), so they are ranked individually. `--compare`
runs the script twice in fresh processes, without votes and with `--voters` (default 0.1),
and prints both side by side (peak RSS is then per run).

DKIM (issue 25): `--sign` signs every digest (a fresh RSA-2048 key, DIGESTD_DKIM_KEY_FILE),
`--sign-ed25519` adds the Ed25519 signature beside it; `--dkim` runs the script twice in
fresh processes, without and with `--sign`, and prints both side by side.
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

from benchmarks.delivery_setup import bench_settings, setup  # noqa: E402

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

    def cpu_seconds(self) -> float:
        """User + system CPU time of the sink process so far (Linux /proc; 0 elsewhere)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

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


async def floor(
    port: int,
    count: int,
    size: int,
    connections: int,
    call: str = "transmit",
    messages: list[bytes] | None = None,
) -> float:
    """Seconds to push `count` pre-built messages over `connections` reused connections:
    `messages` round robin (the end-to-end run's own, as the sink received them), else
    synthetic ones of `size` bytes; with `call`: "transmit", the call `send_due` makes
    (`digestd.mail.smtp_pool.transmit`), or "sendmail", aiosmtplib's own (what send_due used
    before)."""
    from digestd.mail.smtp_pool import transmit, wire_data

    distinct = messages or [build_raw_message(i, size) for i in range(min(count, 256))]
    # Pre-built in wire form, as send_due's messages are (it sends them with wire=True).
    wired = [wire_data(m)[:-3] for m in distinct]
    remaining = iter(range(count))

    async def worker() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30)
        await client.connect()
        try:
            for i in remaining:  # shared iterator: each message goes to exactly one worker
                rcpt = f"reader{i}@example.org"
                if call == "transmit":
                    wire = wired[i % len(wired)]
                    await transmit(client, "digest@localhost", rcpt, wire, wire=True)
                else:
                    await client.sendmail("digest@localhost", [rcpt], distinct[i % len(distinct)])
        finally:
            await client.quit()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - started


def read_dump(sink: Sink, path: Path) -> list[bytes]:
    """The first messages the sink received (`smtp_sink.KEEP`), as it received them."""
    sink.command(f"dump {path}")
    data = path.read_bytes()
    out, at = [], 0
    while at < len(data):
        end = data.index(b"\n", at)
        size = int(data[at:end])
        out.append(data[end + 1 : end + 1 + size])
        at = end + 1 + size
    return out


# ---- the end-to-end run ------------------------------------------------------------------


def end_to_end(args: argparse.Namespace, sink: Sink, tmp: Path) -> dict[str, float | int | str]:
    """Setup (untimed, in a child process), then ingest → plan → select/render/send (timed)
    into the sink."""
    from digestd.core.context import AppContext
    from digestd.delivery.planning import plan_due
    from digestd.delivery.sending import send_due
    from digestd.ingest import ingest_file

    child = subprocess.run(
        [sys.executable, __file__, *sys.argv[1:], "--setup-only", str(tmp)],
        capture_output=True,
        text=True,
    )
    if child.returncode:
        raise SystemExit(f"setup failed:\n{child.stderr}")
    done = json.loads(child.stdout.strip().splitlines()[-1])
    voters, votes = int(done["voters"]), int(done["votes"])
    print(
        f"setup: {args.subscribers} subscribers ({voters} with {votes} votes), "
        f"{args.entries} papers in {done['seconds']:.1f}s (in a child process)"
    )
    ctx = AppContext(settings=bench_settings(args, tmp, sink.port), actor="bench")
    feed = tmp / "feed.json"

    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    sink.command("reset")
    cpu0 = cpu_seconds()
    children0 = cpu_seconds(resource.RUSAGE_CHILDREN)
    sink_cpu0 = sink.cpu_seconds()
    t0 = time.perf_counter()
    ingested = ingest_file(ctx, str(feed))
    if asyncio.iscoroutine(ingested):  # the ingest service may be async
        ingested = asyncio.run(ingested)
    t1 = time.perf_counter()
    plan = plan_due(ctx, force=True)
    t2 = time.perf_counter()
    report = asyncio.run(send_due(ctx, worker_id="bench"))
    t3 = time.perf_counter()
    cpu3 = cpu_seconds()
    children = cpu_seconds(resource.RUSAGE_CHILDREN) - children0
    sink_cpu = sink.cpu_seconds() - sink_cpu0
    if profiler is not None:
        import pstats

        profiler.disable()
        profiler.dump_stats(args.profile)
        stats = pstats.Stats(profiler).sort_stats("tottime")
        stats.print_stats(25)
    messages, size = sink.command("count")
    ctx.dispose()
    assert plan.planned == args.subscribers, plan
    assert messages == report.sent, (messages, report)
    total = t3 - t0
    return {
        "voters": voters,
        "votes": votes,
        "messages": messages,
        "avg_message_bytes": size // max(1, messages),
        "renders": report.renders,
        "skipped_empty": report.skipped,
        "ingest_seconds": round(t1 - t0, 2),
        "plan_seconds": round(t2 - t1, 2),
        "send_seconds": round(t3 - t2, 2),
        "e2e_seconds": round(total, 2),
        "e2e_msgs_per_s": round(messages / total, 1),
        # CPU of this process (all threads) per message: near e2e_seconds/messages means
        # this process, not the network or the sink, is what limits the rate.
        "e2e_cpu_ms_per_msg": round((cpu3 - cpu0) * 1000 / max(1, messages), 3),
        # The pass's own child processes (the DKIM signing process, mail.dkim_offload).
        "e2e_child_cpu_ms_per_msg": round(children * 1000 / max(1, messages), 3),
        # The sink's CPU per message, in its own process: with two CPUs, this process and
        # the sink each have one; neither near its 1000/msgs_per_s means waits, not work.
        "e2e_sink_cpu_ms_per_msg": round(sink_cpu * 1000 / max(1, messages), 3),
        # The most messages that were on the wire or accepted but not yet recorded at once:
        # a SIGKILL at the worst moment of this run would have re-sent at most this many.
        "crash_duplicates_at_most": report.unrecorded_peak,
        "peak_rss_mb_after_send": round(peak_rss_mb(), 1),
    }


# ---- report ------------------------------------------------------------------------------


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    """User + system CPU time of this process so far (every thread), or of its children
    that ended (RUSAGE_CHILDREN)."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


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
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the floor (memory runs at 1M subscribers)"
    )
    parser.add_argument("--message-size", type=int, default=20000, help="floor-only size")
    parser.add_argument(
        "--other-floors",
        action="store_true",
        help="also time synthetic messages of the same average size, with transmit and with "
        "aiosmtplib's sendmail (up to 20,000 messages each)",
    )
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--profile", default=None, help="write a cProfile of the timed run here")
    parser.add_argument("--voters", type=float, default=0.0, help="share of voting subscribers")
    parser.add_argument("--votes-per-voter", default="5-20", help="votes per voter, lo-hi")
    parser.add_argument(
        "--compare", action="store_true", help="run without and with votes, side by side"
    )
    parser.add_argument("--sign", action="store_true", help="DKIM-sign every message (RSA)")
    parser.add_argument(
        "--sign-ed25519", action="store_true", help="DKIM-sign with RSA and Ed25519"
    )
    parser.add_argument(
        "--dkim", action="store_true", help="run without and with --sign, side by side"
    )
    parser.add_argument("--setup-only", default=None, help=argparse.SUPPRESS)  # the child
    args = parser.parse_args()
    if args.setup_only:
        print(json.dumps(setup(args, Path(args.setup_only))))
        return
    if args.compare:
        compare(args)
        return
    if args.dkim:
        base = [a for a in sys.argv[1:] if a not in ("--dkim", "--sign", "--sign-ed25519")]
        side_by_side(base, [("unsigned", []), ("DKIM-signed", ["--sign"])])
        return

    print(f"machine: {machine()}")
    sink = start_sink()
    figures: dict[str, float | int | str] = {}
    own: list[bytes] = []  # the end-to-end run's first messages, replayed by the floor
    try:
        count, size = args.subscribers, args.message_size
        if not args.floor_only:
            with tempfile.TemporaryDirectory(prefix="digestd-bench-") as tmp:
                e2e = end_to_end(args, sink, Path(tmp))
                own = read_dump(sink, Path(tmp) / "replay.bin")
            figures.update(e2e)
            count = int(e2e["messages"])
            size = int(e2e["avg_message_bytes"])
        if not args.no_floor:
            sink.command("reset")
            cpu0 = cpu_seconds()
            sink_cpu0 = sink.cpu_seconds()
            seconds = asyncio.run(floor(sink.port, count, size, args.connections, "transmit", own))
            floor_cpu = cpu_seconds() - cpu0
            floor_sink_cpu = sink.cpu_seconds() - sink_cpu0
            got, _ = sink.command("count")
            assert got == count, f"floor: sink received {got} of {count}"
            figures["floor_messages"] = count
            figures["floor_replayed"] = len(own) if own else "none: synthetic messages"
            figures["floor_seconds"] = round(seconds, 2)
            figures["floor_msgs_per_s"] = round(count / seconds, 1)
            figures["floor_cpu_ms_per_msg"] = round(floor_cpu * 1000 / max(1, count), 3)
            figures["floor_sink_cpu_ms_per_msg"] = round(floor_sink_cpu * 1000 / max(1, count), 3)
            if args.other_floors:
                sample = min(count, 20000)
                for label, call, msgs in (
                    ("synthetic", "transmit", None),
                    ("sendmail_synthetic", "sendmail", None),
                ):
                    seconds = asyncio.run(
                        floor(sink.port, sample, size, args.connections, call, msgs)
                    )
                    figures[f"floor_{label}_msgs_per_s"] = round(sample / seconds, 1)
            if "e2e_msgs_per_s" in figures:
                figures["ratio"] = round(
                    float(figures["e2e_msgs_per_s"]) / float(figures["floor_msgs_per_s"]), 3
                )
        figures["peak_rss_mb"] = round(peak_rss_mb(), 1)
    finally:
        sink.stop()
    _print(figures, args.json)


def _print(figures: dict[str, float | int | str], as_json: bool) -> None:
    for key, value in figures.items():
        print(f"{key:>24}: {value}")
    if as_json:
        print(json.dumps(figures))


def compare(args: argparse.Namespace) -> None:
    """Run this script twice in fresh processes (no votes, then votes) and print both."""
    share = args.voters or 0.1
    base = [a for a in sys.argv[1:] if a != "--compare"]
    # Drop any --voters given: each run sets its own.
    cleaned: list[str] = []
    skip = False
    for a in base:
        if skip:
            skip = False
            continue
        if a == "--voters":
            skip = True
            continue
        if a.startswith("--voters="):
            continue
        cleaned.append(a)
    side_by_side(
        cleaned,
        [("without votes", ["--voters", "0.0"]), (f"{share:.0%} voting", ["--voters", str(share)])],
    )


def side_by_side(base: list[str], variants: list[tuple[str, list[str]]]) -> None:
    """Run this script once per variant (its extra arguments) in fresh processes, one after
    the other, and print the figures side by side."""
    runs = {}
    for label, extra in variants:
        out = subprocess.run(
            [sys.executable, __file__, *base, *extra, "--json"],
            capture_output=True,
            text=True,
            check=True,
        )
        print(f"--- {label}\n{out.stdout.rsplit(chr(10), 2)[0]}", flush=True)
        runs[label] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"load average after the run: {os.getloadavg()[0]:.2f}", flush=True)
    keys = ["voters", "votes", "messages", "renders", "e2e_seconds", "e2e_msgs_per_s"]
    keys += ["e2e_cpu_ms_per_msg", "e2e_child_cpu_ms_per_msg", "floor_msgs_per_s", "ratio"]
    keys += ["peak_rss_mb_after_send"]
    labels = list(runs)
    print(f"{'':>20} {labels[0]:>16} {labels[1]:>16}")
    for key in keys:
        print(f"{key:>20} {runs[labels[0]].get(key)!s:>16} {runs[labels[1]].get(key)!s:>16}")


if __name__ == "__main__":
    main()
