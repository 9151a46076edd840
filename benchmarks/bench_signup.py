"""How fast `POST /subscribe` answers, by the state of the address (prints figures; not a test).

    .venv/bin/python benchmarks/bench_signup.py [--requests 300]

Issue 23 measured bounced or complained addresses answered faster (3.9 ms median) than
others (5.6 ms): the form's timing told a suppressed address apart. The answer now goes out
before any work on the address (the sign-up and its mail run after it, whatever the state),
so the medians should be equal within noise.

A fresh SQLite file; the app (generous client limits, so no 429) under uvicorn on 127.0.0.1
in a thread; an SMTP relay that is not there (mails fail after the answer, as they may).
Per state, `--requests` JSON sign-ups, interleaved round robin so load changes hit every
state alike: a new address each time, a pending one, an active one, a bounced one, a
complained one, one over its daily mails. Prints median and p90 per state and the load
average (the machine may be shared).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import uvicorn  # noqa: E402

from digestd.core.config import Settings  # noqa: E402
from digestd.core.context import AppContext  # noqa: E402
from digestd.core.statuses import ConsentVia, SubscriberStatus  # noqa: E402
from digestd.subscribers import lifecycle, signup, store  # noqa: E402
from digestd.subscribers.lifecycle import Consent  # noqa: E402
from digestd.subscribers.preferences import Preferences  # noqa: E402
from digestd.web import create_app  # noqa: E402
from digestd.web.ratelimit import WebLimits  # noqa: E402
from digestd.web.server import bind  # noqa: E402

STATES = ("new", "pending", "active", "bounced", "complained", "over its daily mails")


def seed(ctx: AppContext) -> None:
    now = ctx.now()
    with store.transaction(ctx) as s:
        for name, status in (
            ("pending", SubscriberStatus.PENDING),
            ("active", SubscriberStatus.ACTIVE),
            ("bounced", SubscriberStatus.ACTIVE),
            ("complained", SubscriberStatus.ACTIVE),
        ):
            consent = Consent(now, ConsentVia.ADMIN, "bench")
            sub, added = lifecycle.new_subscriber(
                f"{name}@example.org", Preferences(), status=status, now=now, consent=consent
            )
            store.add(s, sub, added, actor="bench", now=now)
            step = None
            if name == "bounced":
                step = lifecycle.bounce(sub, now=now, reason="5.1.1")
            elif name == "complained":
                step = lifecycle.complain(sub, now=now)
            store.save(s, sub, [step], actor="bench", now=now)
    for _ in range(3):  # its share of mail for today
        signup.request_subscription(
            ctx, "busy@example.org", Preferences(), via=ConsentVia.WEB, actor="bench"
        )


def address(state: str, i: int) -> str:
    return {
        "new": f"new{i}@example.org",
        "pending": "pending@example.org",
        "active": "active@example.org",
        "bounced": "bounced@example.org",
        "complained": "complained@example.org",
        "over its daily mails": "busy@example.org",
    }[state]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="per state")
    args = parser.parse_args()
    logging.getLogger("digestd").setLevel(logging.CRITICAL)  # the mails fail on purpose
    with tempfile.TemporaryDirectory() as tmp:
        sock = bind("127.0.0.1", 0)
        port = sock.getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        settings = Settings(
            database_url=f"sqlite:///{tmp}/bench.db",
            base_url=base,
            secret_key="bench-secret-key-0123456789",
            smtp_port=9,  # nothing listens: mails fail after the answer
            smtp_timeout=1.0,
            log_level="error",
        )
        ctx = AppContext(settings=settings, actor="web")
        ctx.migrate()
        seed(ctx)
        generous = WebLimits(subscribe_per_client="100000/minute", posts_per_client="100000/minute")
        app = create_app(ctx, limits=generous)
        server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="on"))
        thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
        thread.start()
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        load_before = os.getloadavg()[0]
        times: dict[str, list[float]] = {state: [] for state in STATES}
        with httpx.Client(base_url=base, headers={"Origin": base}) as client:
            for i in range(args.requests):
                for state in STATES:
                    started = time.perf_counter()
                    response = client.post("/subscribe", json={"email": address(state, i)})
                    elapsed = time.perf_counter() - started
                    assert response.status_code == 202, (state, response.status_code)
                    times[state].append(elapsed * 1000)
        server.should_exit = True
        thread.join(timeout=30)
        ctx.dispose()
    print(f"POST /subscribe, {args.requests} requests per state, load {load_before:.1f} before")
    print(f"{'state':<22} {'median ms':>10} {'p90 ms':>8}")
    for state in STATES:
        values = sorted(times[state])
        p90 = values[int(len(values) * 0.9) - 1]
        print(f"{state:<22} {statistics.median(values):>10.2f} {p90:>8.2f}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
