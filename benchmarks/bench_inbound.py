"""Inbound mail through the SMTP listener into the database (prints figures; not a test).

    .venv/bin/python benchmarks/bench_inbound.py --messages 10000 --connections 4
    .venv/bin/python benchmarks/bench_inbound.py --postgres   # DIGESTD_TEST_POSTGRES_URL
    .venv/bin/python benchmarks/bench_inbound.py --dsn-blocks 5000,10000,20000,40000 [--hostile]

1. Setup (untimed): a fresh SQLite file (or a private PostgreSQL schema), N active
   subscribers with one planned delivery each, DIGESTD_BOUNCE_ADDRESS set.
2. The listener (`listener_for`, exactly what `digestd run` serves) runs in this process on
   127.0.0.1, random port, on its own asyncio loop.
3. A client process (this script with --client, so its CPU is not charged here) sends the
   corpora of tests/fixtures/bounces/ (flufl.bounce's and Sisimai's samples), repeated to
   N messages, each to a fresh VERP address (one delivery each), over C SMTP connections.
4. Timed: from the client's first connection to its last 250. Printed: messages/s, this
   process's CPU (every thread) per message, and what was recorded (kinds, subscribers
   bounced), checked against what was sent.

`--dsn-blocks N,N,...` (issue 23, finding 3) instead times one message at a time through
`process_message` (parse, read, find the evidence, record; a fresh SQLite file): a DSN of
N recipient blocks, in two shapes: "report-only" (no human-readable part: the forged shape
whose reading grew with the square of N) and "listing" (a text part naming every failed
address, as Sendmail writes; no recipient has a Diagnostic-Code of its own, so each reads
the report's text). Printed: seconds per message and per 1,000 blocks (flat when linear).
`--whole` lifts the MAX_PARSED window (parse.py) to see how the reading itself grows;
`--hostile` adds the worst 10 MB shapes we know (a million empty MIME parts, 300,000
one-line DSN blocks, a megabyte of bounce text): bounded, whatever the size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The corpora as copied into the tests (from ../shared/fixtures/bounces/).
CORPORA = [
    REPO / "tests" / "fixtures" / "bounces" / "flufl-bounce",
    REPO / "tests" / "fixtures" / "bounces" / "sisimai",
]
BOUNCE_ADDRESS = "bounces@bounce.example.org"


def corpus() -> list[Path]:
    """Every sample message of the two corpora."""
    files: dict[str, Path] = {}
    for folder in CORPORA:
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.suffix in (".txt", ".eml"):
                    files.setdefault(f"{folder.name}/{path.name}", path)
    if not files:
        sys.exit("no corpus found (tests/fixtures/bounces/)")
    return list(files.values())


# ---- client process --------------------------------------------------------------------


def client(port: int, jobs_file: Path, connections: int) -> None:
    """Send every (recipient, file) job over `connections` smtplib sessions; print timing."""
    jobs = [json.loads(line) for line in jobs_file.read_text().splitlines()]
    bodies = {path: Path(path).read_bytes() for path in {j["file"] for j in jobs}}
    shares = [jobs[i::connections] for i in range(connections)]
    codes: Counter[int] = Counter()
    lock = threading.Lock()

    def run(share: list[dict[str, Any]]) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=120) as smtp:
            smtp.ehlo("bench.example.net")
            for job in share:
                smtp.mail("")
                code, _ = smtp.rcpt(job["rcpt"])
                if code == 250:
                    code, _ = smtp.data(bodies[job["file"]])
                else:
                    smtp.rset()
                with lock:
                    codes[code] += 1

    threads = [threading.Thread(target=run, args=(s,)) for s in shares]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    print(json.dumps({"seconds": elapsed, "codes": dict(codes)}))


# ---- server side (this process) --------------------------------------------------------


def setup(url: str, count: int) -> tuple[Any, list[int]]:
    """A migrated database with `count` active subscribers and one planned delivery each."""
    from datetime import UTC, datetime

    from sqlalchemy import insert, select

    from digestd.core.config import Settings
    from digestd.core.context import AppContext
    from digestd.core.db import session_scope
    from digestd.core.models import Delivery, Subscriber
    from digestd.delivery.planning import plan_due

    settings = Settings(
        database_url=url,
        secret_key="bench-secret-key-0123456789",
        bounce_address=BOUNCE_ADDRESS,  # type: ignore[call-arg]
        inbound_max_connections=64,
        smtp_port=9,  # command replies (none in the corpora) would go nowhere
    )
    ctx = AppContext(settings=settings, clock=lambda: datetime.now(UTC), actor="bench")
    ctx.migrate()
    now = ctx.now()
    with session_scope(ctx.engine) as session:
        for first in range(0, count, 5000):
            session.execute(
                insert(Subscriber),
                [
                    {
                        "email": f"reader{i:07d}@example.org",
                        "status": "active",
                        "created_at": now,
                        "confirmed_at": now,
                        "token_version": 1,
                    }
                    for i in range(first, min(first + 5000, count))
                ],
            )
    plan = plan_due(ctx, force=True)
    assert plan.planned == count, plan
    with session_scope(ctx.engine) as session:
        ids = [row[0] for row in session.execute(select(Delivery.id).order_by(Delivery.id))]
    return ctx, ids


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def recorded(ctx: Any) -> tuple[Counter[str], int]:
    from sqlalchemy import func, select, text

    from digestd.core.db import session_scope
    from digestd.core.models import Subscriber

    with session_scope(ctx.engine) as session:
        kinds = Counter(
            {
                k: int(n)
                for k, n in session.execute(
                    text("SELECT kind, COUNT(*) FROM inbound GROUP BY kind")
                )
            }
        )
        bounced = session.execute(
            select(func.count()).where(Subscriber.status == "bounced")
        ).scalar_one()
    return kinds, int(bounced)


def bench(
    label: str, url: str, count: int, connections: int, tmp: Path, *, floor: bool = False
) -> None:
    import asyncio

    from digestd.inbound.addresses import verp_address
    from digestd.inbound.smtp_listener import InboundSmtpListener, listener_for

    t0 = time.perf_counter()
    ctx, ids = setup(url, count)
    files = corpus()
    jobs = tmp / f"jobs-{label}.jsonl"
    with jobs.open("w") as out:
        for i, delivery_id in enumerate(ids):
            rcpt = verp_address(ctx.settings, ctx.secret_key, delivery_id)
            out.write(json.dumps({"rcpt": rcpt, "file": str(files[i % len(files)])}) + "\n")
    print(
        f"{label}: setup {count} subscribers and deliveries, {len(files)} corpus files "
        f"in {time.perf_counter() - t0:.1f}s"
    )

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    listener = listener_for(ctx)
    if floor:
        # The transport alone: the same listener and limits, a handler that records nothing.
        listener = InboundSmtpListener(
            lambda raw, mail_from, rcpt_to, source: _Nothing(),
            lambda address: True,
            listener.limits,
        )
    _, port = asyncio.run_coroutine_threadsafe(listener.start("127.0.0.1", 0), loop).result(30)

    load_before = os.getloadavg()
    cpu0 = cpu_seconds()
    proc = subprocess.run(
        [sys.executable, __file__, "--client", str(port), str(jobs), str(connections)],
        capture_output=True,
        text=True,
        check=True,
    )
    cpu1 = cpu_seconds()
    load_after = os.getloadavg()
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    asyncio.run_coroutine_threadsafe(listener.stop(), loop).result(60)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)

    seconds = result["seconds"]
    if floor:
        print(
            f"{label}: {count / seconds:,.1f} messages/s ({seconds:.2f} s), "
            f"CPU {1000 * (cpu1 - cpu0) / count:.2f} ms/message (listener only, no processing); "
            f"load average {load_before[0]:.1f} → {load_after[0]:.1f}"
        )
        ctx.dispose()
        return
    kinds, bounced = recorded(ctx)
    total = sum(kinds.values())
    print(f"{label}: sent {count} over {connections} connections; replies {result['codes']}")
    print(f"{label}: recorded {total} ({', '.join(f'{k} {n}' for k, n in kinds.most_common())})")
    print(f"{label}: subscribers marked bounced: {bounced}")
    print(
        f"{label}: {count / seconds:,.1f} messages/s ({seconds:.2f} s), "
        f"CPU {1000 * (cpu1 - cpu0) / count:.2f} ms/message (listener + processing, this "
        f"process); load average {load_before[0]:.1f} → {load_after[0]:.1f}"
    )
    assert total == count, (total, count)
    ctx.dispose()


# ---- one big message at a time (--dsn-blocks, --hostile) ---------------------------------


def big_dsn(blocks: int, shape: str) -> bytes:
    """A DSN of `blocks` failed recipients without Diagnostic-Code, in `shape` (see above)."""
    report = "\r\n".join(
        f"Final-Recipient: rfc822; user{i}@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        for i in range(blocks)
    )
    text = ""
    if shape == "listing":
        listed = "".join(f"<user{i}@example.net>: user unknown\r\n" for i in range(blocks))
        text = f"--B\r\nContent-Type: text/plain\r\n\r\nCould not be delivered to:\r\n{listed}\r\n"
    return (
        "From: MAILER-DAEMON@mx.example.net\r\nTo: bounces@bounce.example.org\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n"
        f"{text}--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; mx.example.net\r\n\r\n{report}\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        "Message-ID: <digest.2026-11-26.1.0123456789ab@example.org>\r\nTo: user0@example.net\r\n"
        "\r\n--B--\r\n"
    ).encode()


def hostile(size: int = 10 * 1024 * 1024) -> dict[str, bytes]:
    """The worst shapes of `size` bytes we know for the parser and the detectors."""
    shapes = {
        "1M empty MIME parts": (
            b"From: x@example.net\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=B\r\n\r\n",
            b"--B\r\n\r\nx\r\n",
        ),
        "300k one-line DSN blocks": (
            b"From: MAILER-DAEMON@x.example\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n"
            b"--B\r\nContent-Type: message/delivery-status\r\n\r\n",
            b"Final-Recipient: rfc822; a@b.cc\r\n\r\n",
        ),
        "10 MB of bounce text": (
            b"From: MAILER-DAEMON@x.example\r\nSubject: Undelivered\r\n\r\n",
            b"<a@b.cc>: user unknown\r\n",
        ),
    }
    return {
        name: head + unit * ((size - len(head)) // len(unit))
        for name, (head, unit) in shapes.items()
    }


def one_at_a_time(
    sizes: list[int], with_hostile: bool, tmp: Path, shapes: list[str], whole: bool
) -> None:
    """Time process_message on one big message at a time (see the module's docstring);
    `whole`: parse whole messages (no MAX_PARSED window), to see the reading's growth."""
    from datetime import UTC, datetime

    from digestd.core.config import Settings
    from digestd.core.context import AppContext
    from digestd.inbound import parse
    from digestd.inbound.process import process_message

    settings = Settings(
        database_url=f"sqlite:///{tmp}/one.db",
        secret_key="bench-secret-key-0123456789",
        bounce_address=BOUNCE_ADDRESS,  # type: ignore[call-arg]
        inbound_max_bytes=64 * 1024 * 1024,
    )
    ctx = AppContext(settings=settings, clock=lambda: datetime.now(UTC), actor="bench")
    ctx.migrate()
    if whole:
        parse.MAX_PARSED = 1 << 30  # type: ignore[misc]
    messages = [(f"{shape} {n:>6} blocks", big_dsn(n, shape)) for shape in shapes for n in sizes]
    if with_hostile:
        messages += list(hostile().items())
    print(f"{'message':<34} {'MB':>6} {'s/message':>10} {'s/1k blocks':>12}  recorded as")
    for label, raw in messages:
        started = time.perf_counter()
        result = process_message(ctx, raw, rcpt_to=[BOUNCE_ADDRESS], source=label)
        seconds = time.perf_counter() - started
        blocks = int(label.split()[1]) if label.split()[1].isdigit() else 0
        per_k = f"{1000 * seconds / blocks:.3f}" if blocks else "-"
        print(
            f"{label:<34} {len(raw) / 1e6:>6.1f} {seconds:>10.2f} {per_k:>12}  "
            f"{result.kind}: {result.summary[:70]}",
            flush=True,
        )
    ctx.dispose()


class _Nothing:
    kind = "unrecognized"
    recorded_id = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--postgres", action="store_true", help="also on DIGESTD_TEST_POSTGRES_URL")
    parser.add_argument(
        "--floor", action="store_true", help="also the listener alone (a handler doing nothing)"
    )
    parser.add_argument("--client", nargs=3, metavar=("PORT", "JOBS", "CONNECTIONS"))
    parser.add_argument(
        "--dsn-blocks", help="N,N,...: time one DSN of N recipient blocks at a time instead"
    )
    parser.add_argument("--hostile", action="store_true", help="with --dsn-blocks: 10 MB shapes")
    parser.add_argument("--shapes", default="report-only,listing", help="with --dsn-blocks")
    parser.add_argument(
        "--whole", action="store_true", help="with --dsn-blocks: parse whole messages"
    )
    args = parser.parse_args()
    if args.client:
        port, jobs, connections = args.client
        client(int(port), Path(jobs), int(connections))
        return
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()}")
    if args.dsn_blocks:
        sizes = [int(n) for n in args.dsn_blocks.split(",")]
        with tempfile.TemporaryDirectory() as tmp:
            shapes = args.shapes.split(",")
            one_at_a_time(sizes, args.hostile, Path(tmp), shapes, args.whole)
        print(f"load average {os.getloadavg()}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.floor:
            url = f"sqlite:///{tmp}/floor.db"
            bench("floor", url, args.messages, args.connections, Path(tmp), floor=True)
        bench("sqlite", f"sqlite:///{tmp}/bench.db", args.messages, args.connections, Path(tmp))
        base = os.environ.get("DIGESTD_TEST_POSTGRES_URL")
        if args.postgres and base:
            from benchmarks.pg_schema import private_schema_url

            url, drop = private_schema_url(base)
            try:
                bench("postgres", url, args.messages, args.connections, Path(tmp))
            finally:
                drop()


if __name__ == "__main__":
    main()
