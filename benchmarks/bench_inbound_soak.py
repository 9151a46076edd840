"""A soak of `digestd run` with the SMTP listener, the web and the scheduler (prints
figures; not a test). tests/integration/test_inbound_smtp_soak.py is the short version.

    .venv/bin/python benchmarks/bench_inbound_soak.py [--seconds 60] [--timeout 5]

1. Setup (untimed): a fresh SQLite file with N subscribers and one due digest each, an SMTP
   relay (aiosmtpd on 127.0.0.1), and `digestd run` in a subprocess with the web and
   DIGESTD_INBOUND_LISTEN on random ports; its first send run delivers the N digests.
2. The soak (tests/support/inbound_soak.py): 20 SMTP connections at once for --seconds,
   12 hostile (10 cycling through floods without CRLF, SIZE lies, a huge SIZE, over-long
   command lines, bad commands and relay attempts; 2 silent or trickling sessions) and 8
   sending valid DSNs to the digests' VERP addresses as an MTA would (a 4xx or a lost
   connection: the same message again); /healthz asked and RSS read every 0.25 s.
3. Printed: valid bounces answered 250 against the inbound rows recorded (all must be),
   what each hostile kind was answered, RSS at the start and peak (VmHWM), /healthz
   latency and answers, and the scheduler's job runs during the soak.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.inbound_soak import healthz_ms, recorded, soak, soak_daemon  # noqa: E402
from tests.support.smtp import SmtpTestServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--valid", type=int, default=8, help="of the connections, valid senders")
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--timeout", default="5", help="DIGESTD_INBOUND_TIMEOUT for the run")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()}")
    relay = SmtpTestServer().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = {"DIGESTD_INBOUND_TIMEOUT": args.timeout, "DIGESTD_LEASE_SECONDS": "30"}
            with soak_daemon(Path(tmp), args.subscribers, relay.port, **env) as (
                process,
                target,
                url,
            ):
                quiet = sorted(healthz_ms(target))
                before = len(process.lines)
                report = soak(target, args.seconds, args.connections, args.valid)
                kinds = recorded(url)
                alive = process.proc.poll() is None
                jobs = [line for line in process.lines[before:] if " job=" in line]
            print(
                f"setup: {args.subscribers} digests sent by the scheduler's first run "
                f"(relay got {len(relay.messages)}); DIGESTD_INBOUND_TIMEOUT={args.timeout}"
            )
            print(
                f"/healthz before the soak: median {quiet[len(quiet) // 2]:.1f} ms, "
                f"max {quiet[-1]:.1f} ms"
            )
            for line in report.lines():
                print(line)
            total = sum(kinds.values())
            verdict = "all recorded" if total == report.valid_sent else "MISMATCH"
            print(
                f"recorded: {total} inbound rows {dict(kinds)}, "
                f"{report.valid_sent} valid bounces answered 250: {verdict}"
            )
            names = sorted({line.split(" job=")[1].split()[0] for line in jobs})
            print(f"scheduler: {len(jobs)} job runs during the soak ({', '.join(names) or 'none'})")
            print(f"daemon alive at the end: {alive}; load average {os.getloadavg()}")
    finally:
        relay.stop()


if __name__ == "__main__":
    main()
