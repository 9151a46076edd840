"""A database outage a third of the way into a send run (issue 23 finding 6; prints figures).

    DIGESTD_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python benchmarks/bench_db_outage.py --digests 3000 --outage 10

1. A fresh private PostgreSQL schema with N active subscribers and one due delivery each
   (real planning, `tests/support/daemon.seed_due_deliveries`).
2. A real SMTP sink (aiosmtpd, in this process) that counts every Message-ID it accepts.
3. A real `digestd run` process (default lease, 300 s) that reaches PostgreSQL through a TCP
   proxy on loopback (`tests/support/tcp_proxy.py`): the outage cuts this daemon's
   connections only, so other users of the shared server are untouched (a PostgreSQL
   restart would cut them all). When the sink has accepted N/3 messages the proxy is cut
   (open connections reset, new ones refused, as while PostgreSQL restarts) for
   `--outage` seconds, then restored.
4. The delivery table is read directly (not through the proxy) every 0.2 s until every
   digest is sent or `--watch` seconds (default 180) after the database came back.

Prints: the statuses at the outage, seconds from the database's return until all N were
sent, how many were sent `--watch` seconds after it, `sending` rows left, and duplicates
and missing digests counted at the sink by Message-ID; then the daemon's hand-back lines.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.smtp import SMTP, Envelope, Session  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from benchmarks.pg_schema import private_schema_url  # noqa: E402
from tests.support.daemon import (  # noqa: E402
    DaemonProcess,
    daemon_env,
    delivery_statuses,
    seed_due_deliveries,
)
from tests.support.smtp import free_port  # noqa: E402
from tests.support.tcp_proxy import TcpProxy  # noqa: E402

_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


class CountingSink:
    """Accepts every message; counts each Message-ID; sets `reached` at `mark` messages."""

    def __init__(self, mark: int) -> None:
        self.ids: Counter[bytes] = Counter()
        self.lock = threading.Lock()
        self.mark = mark
        self.reached = threading.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or envelope.content or b""
        assert isinstance(data, bytes)
        found = _MESSAGE_ID.search(data)
        with self.lock:
            self.ids[found.group(1) if found else b"?"] += 1
            if sum(self.ids.values()) >= self.mark:
                self.reached.set()
        return "250 2.0.0 OK"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--digests", type=int, default=3000)
    parser.add_argument("--outage", type=float, default=10.0, help="seconds the database is away")
    parser.add_argument("--watch", type=float, default=180.0, help="seconds watched after it")
    parser.add_argument("--lease", type=int, default=300, help="DIGESTD_LEASE_SECONDS")
    parser.add_argument("--database-url", default=os.environ.get("DIGESTD_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    if not args.database_url:
        parser.error("needs PostgreSQL: --database-url or DIGESTD_TEST_POSTGRES_URL")
    n = args.digests
    url, drop = private_schema_url(args.database_url)
    sink = CountingSink(n // 3)
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    daemon: DaemonProcess | None = None
    try:
        started = time.monotonic()
        planned = seed_due_deliveries(url, n)
        print(f"setup: {n} due digests in {time.monotonic() - started:.1f} s")
        controller.start()
        target = make_url(url)
        proxy = TcpProxy((target.host or "127.0.0.1", target.port or 5432))
        through = target.set(port=proxy.port).render_as_string(hide_password=False)
        env = daemon_env(through, controller.port, DIGESTD_LEASE_SECONDS=str(args.lease))
        daemon = DaemonProcess(env)
        if not sink.reached.wait(timeout=300):
            print("the sink never reached a third: see the daemon's output", file=sys.stderr)
            print(daemon.output, file=sys.stderr)
            return 1
        proxy.cut()
        cut_at = time.monotonic()
        at_outage = delivery_statuses(url)
        with sink.lock:
            accepted_at_outage = sum(sink.ids.values())
        time.sleep(args.outage)  # a benchmark: the outage lasts this long on purpose
        proxy.restore()
        back = time.monotonic()
        all_sent: float | None = None
        statuses = delivery_statuses(url)
        while time.monotonic() - back < args.watch:
            statuses = delivery_statuses(url)
            if statuses == {"sent": n}:
                all_sent = time.monotonic() - back
                break
            time.sleep(0.2)
        with sink.lock:
            received = Counter(sink.ids)
        wanted = {m.encode() for m in planned}
        duplicates = sum(received.values()) - len(received)
        missing = len(wanted - set(received))
        print(
            f"digests {n}, lease {args.lease} s, outage {args.outage:.1f} s "
            f"(cut at {cut_at - started:.1f} s after setup began)"
        )
        print(f"at the outage: accepted by the sink {accepted_at_outage}, statuses {at_outage}")
        print(
            "all sent after the database came back: "
            + (f"{all_sent:.1f} s" if all_sent is not None else f"no (after {args.watch:.0f} s)")
        )
        print(f"statuses {args.watch:.0f} s after, or when all were sent: {statuses}")
        print(f"sent {statuses.get('sent', 0)} of {n}; sending left {statuses.get('sending', 0)}")
        print(
            f"at the sink: {sum(received.values())} messages, {len(received)} distinct "
            f"Message-IDs, duplicates {duplicates}, missing {missing}"
        )
        for line in daemon.output.splitlines():
            if "send pass failed" in line or "handed back" in line or "job=send" in line:
                print("  " + line[:260])
        return 0 if all_sent is not None and duplicates == 0 and missing == 0 else 2
    finally:
        if daemon is not None:
            daemon.stop()
        controller.stop()
        drop()


if __name__ == "__main__":
    raise SystemExit(main())
