"""A soak of a running `digestd run` (SMTP listener, web and scheduler in one process).

SMTP connections at once, most of them hostile (floods without CRLF, SIZE lies, over-long
command lines, bad commands, silent and trickling sessions, relay attempts), the rest
sending valid bounces the way an MTA does (a 4xx answer or a dropped connection: the same
message again). Meanwhile `/healthz` is asked and the process's RSS read every 0.25 s.

Used by benchmarks/bench_inbound_soak.py (60 s, prints figures) and
tests/integration/test_inbound_smtp_soak.py (a few seconds, asserts). Every wait is
bounded by the soak's end or a socket timeout.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import select
import smtplib
import statistics
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.daemon import SECRET, DaemonProcess, daemon_env, seed_due_deliveries
from tests.support.inbound import BOUNCE_ADDRESS, dsn
from tests.support.smtp_hostile import RawSmtp, flood, peak_kb, reset_peak, rss_kb

MB = 1024 * 1024
# Most hostile connections cycle through the quick attacks; SLOWLORIS of them hold their
# connection as long as the listener lets them (silent: the idle timeout; trickle: the
# session cap), as an attacker filling the connection cap would.
QUICK = ("no-crlf", "size-lie", "size-huge", "long-command", "bad-commands", "relay")
SLOW = ("silent", "trickle")
SLOWLORIS = 2
PACE = 0.25  # seconds between /healthz probes and RSS samples
PER_CONNECTION = 20  # valid bounces sent on one connection before a new one is opened


@dataclass
class SoakTarget:
    """The daemon under soak: its pid, ports, and (VERP address, subscriber) pairs of real
    deliveries that valid bounces are sent to."""

    pid: int
    smtp_port: int
    web_port: int
    deliveries: list[tuple[str, str]]
    host: str = "127.0.0.1"


@dataclass
class SoakReport:
    seconds: float = 0.0
    valid_sent: int = 0  # answered 250: recorded
    valid_retried: int = 0  # 4xx or connection lost: sent again, as an MTA would
    valid_refused: int = 0  # 5xx: must stay 0
    hostile: Counter[str] = field(default_factory=Counter)  # "kind reply-code" -> count
    start_rss_kb: int = 0
    peak_rss_kb: int = 0
    healthz_ms: list[float] = field(default_factory=list)
    healthz_codes: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def lines(self) -> list[str]:
        """The figures, one per line."""
        ms = sorted(self.healthz_ms) or [0.0]
        p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
        hostile = ", ".join(f"{k} {n}" for k, n in sorted(self.hostile.items()))
        return [
            f"soak: {self.seconds:.1f} s",
            f"valid bounces: {self.valid_sent} answered 250, {self.valid_retried} sent again "
            f"after a 4xx or a lost connection, {self.valid_refused} refused",
            f"hostile sessions (kind, answer): {hostile}",
            f"RSS: {self.start_rss_kb / 1024:.1f} MB at the start, "
            f"peak {self.peak_rss_kb / 1024:.1f} MB "
            f"(+{(self.peak_rss_kb - self.start_rss_kb) / 1024:.1f} MB)",
            f"/healthz: {len(self.healthz_ms)} probes, answers {dict(self.healthz_codes)}, "
            f"median {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms, max {ms[-1]:.1f} ms",
        ]


# ---- the hostile sessions (each returns what it was answered) ---------------------------


def _code(reply: bytes) -> str:
    return reply[:3].decode("ascii", "replace") or "closed"


def _no_crlf(conn: RawSmtp, rcpt: str, stop: threading.Event) -> str:
    conn.open_data(rcpt)
    return _code(flood(conn, b"x", 200 * MB).reply)


def _size_lie(conn: RawSmtp, rcpt: str, stop: threading.Event) -> str:
    conn.open_data(rcpt, size=1000)
    return _code(flood(conn, b"y" * 998 + b"\r\n", 200 * MB).reply)


def _size_huge(conn: RawSmtp, rcpt: str, stop: threading.Event) -> str:
    assert conn.line().startswith(b"220")
    conn.command(b"EHLO mx.example.net")
    return _code(conn.command(b"MAIL FROM:<> SIZE=99999999999"))


def _long_command(conn: RawSmtp, rcpt: str, stop: threading.Event) -> str:
    assert conn.line().startswith(b"220")
    return _code(flood(conn, b"A", 32 * MB, end=b"\r\n").reply)


JUNK = (
    b"\x00\xff\xfe\x80 garbage",
    b"MAIL FROM:<<<>>>",
    b"RCPT TO:<victim@example.com>",
    b"DATA",
    b"BDAT 1000 LAST",
    b"AUTH PLAIN AGFkbWluAHNlY3JldA==",
    b"HELO",
    b"EXPN staff",
)


def _bad_commands(conn: RawSmtp, rcpt: str, stop: threading.Event) -> str:
    assert conn.line().startswith(b"220")
    reply = b""
    for junk in itertools.islice(itertools.cycle(JUNK), 40):
        reply = conn.command(junk)
        if not reply or reply.startswith(b"421"):
            break
    return _code(reply)


def _wait_answer(conn: RawSmtp, stop: threading.Event, send: bytes = b"") -> str:
    """Say nothing (or `send` one piece each half second) until the listener answers."""
    while not stop.is_set():
        if select.select([conn.sock], [], [], 0.5)[0]:
            return _code(conn.line())
        if send:
            conn.sock.sendall(send)
    return "still open at the end"


def _silent(conn: RawSmtp, rcpt: str, stop: threading.Event) -> str:
    assert conn.line().startswith(b"220")
    conn.command(b"EHLO mx.example.net")
    return _wait_answer(conn, stop)


def _trickle(conn: RawSmtp, rcpt: str, stop: threading.Event) -> str:
    conn.open_data(rcpt)
    return _wait_answer(conn, stop, send=b"x")


def _relay(conn: RawSmtp, rcpt: str, stop: threading.Event) -> str:
    assert conn.line().startswith(b"220")
    conn.command(b"EHLO mx.example.net")
    conn.command(b"MAIL FROM:<spam@example.com>")
    return _code(conn.command(b"RCPT TO:<victim@example.com>"))


SESSIONS: dict[str, Callable[[RawSmtp, str, threading.Event], str]] = {
    "no-crlf": _no_crlf,
    "size-lie": _size_lie,
    "size-huge": _size_huge,
    "long-command": _long_command,
    "bad-commands": _bad_commands,
    "silent": _silent,
    "trickle": _trickle,
    "relay": _relay,
}


def _hostile(target: SoakTarget, index: int, stop: threading.Event, report: SoakReport) -> None:
    rcpt = target.deliveries[0][0]
    kinds = SLOW if index < SLOWLORIS else QUICK
    for kind in itertools.islice(itertools.cycle(kinds), index, None):
        if stop.is_set():
            return
        try:
            with RawSmtp(target.host, target.smtp_port, timeout=30) as conn:
                outcome = SESSIONS[kind](conn, rcpt, stop)
        except AssertionError:  # the greeting was a 421: the connection cap was reached
            outcome = "421 at connect"
            stop.wait(0.05)  # pacing before the next try (bounded by the soak's end)
        except OSError as exc:
            outcome = type(exc).__name__
        with report.lock:
            report.hostile[f"{kind} {outcome}"] += 1


# ---- valid bounces, sent as an MTA sends them ----------------------------------------------


def _valid(target: SoakTarget, first: int, stop: threading.Event, report: SoakReport) -> None:
    jobs: Iterator[tuple[str, str]] = itertools.islice(
        itertools.cycle(target.deliveries), first, None
    )
    rcpt, email = next(jobs)
    while not stop.is_set():
        try:
            with smtplib.SMTP(target.host, target.smtp_port, timeout=60) as client:
                client.ehlo("mx.example.net")
                for _ in range(PER_CONNECTION):
                    if stop.is_set():
                        break
                    client.sendmail("", [rcpt], dsn(to=rcpt, recipient=email))
                    with report.lock:
                        report.valid_sent += 1
                    rcpt, email = next(jobs)
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code >= 500:
                with report.lock:
                    report.valid_refused += 1
                rcpt, email = next(jobs)
                continue
            _again(report, stop)
        except smtplib.SMTPRecipientsRefused:
            with report.lock:
                report.valid_refused += 1
            rcpt, email = next(jobs)
        except (smtplib.SMTPException, OSError):
            _again(report, stop)


def _again(report: SoakReport, stop: threading.Event) -> None:
    with report.lock:
        report.valid_retried += 1
    stop.wait(0.05)  # an MTA's back-off, shortened (bounded by the soak's end)


# ---- watching the process -----------------------------------------------------------------


def _watch(target: SoakTarget, stop: threading.Event, report: SoakReport) -> None:
    url = f"http://{target.host}:{target.web_port}/healthz"
    while not stop.wait(PACE):
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                code = str(response.status)
        except urllib.error.HTTPError as exc:
            code = str(exc.code)
        except OSError as exc:
            code = type(exc).__name__
        with report.lock:
            report.healthz_ms.append(1000 * (time.perf_counter() - started))
            report.healthz_codes[code] += 1
            report.peak_rss_kb = max(report.peak_rss_kb, rss_kb(target.pid))


def healthz_ms(target: SoakTarget, probes: int = 20) -> list[float]:
    """/healthz latencies of `probes` requests in a row (the figure without load)."""
    url = f"http://{target.host}:{target.web_port}/healthz"
    latencies = []
    for _ in range(probes):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
        latencies.append(1000 * (time.perf_counter() - started))
    return latencies


def soak(target: SoakTarget, seconds: float, connections: int = 20, valid: int = 8) -> SoakReport:
    """Run the soak for `seconds`; `valid` of the `connections` send valid bounces."""
    report = SoakReport(start_rss_kb=rss_kb(target.pid))
    reset_peak(target.pid)
    stop = threading.Event()
    threads = [threading.Thread(target=_watch, args=(target, stop, report), daemon=True)]
    for i in range(connections):
        run, index = (_valid, i) if i < valid else (_hostile, i - valid)
        threads.append(
            threading.Thread(target=run, args=(target, index, stop, report), daemon=True)
        )
    started = time.monotonic()
    for thread in threads:
        thread.start()
    stop.wait(seconds)  # the soak's length is what is measured
    stop.set()
    for thread in threads:
        thread.join(timeout=120)
    report.seconds = time.monotonic() - started
    report.peak_rss_kb = max(report.peak_rss_kb, peak_kb(target.pid))
    return report


# ---- the daemon under soak ------------------------------------------------------------------


def sent_digests(process: DaemonProcess) -> int:
    """Digests the scheduler's send runs reported sent so far (from the daemon's log)."""
    return sum(int(n) for n in re.findall(r"job=send claimed=\d+ sent=(\d+)", process.output))


@contextlib.contextmanager
def soak_daemon(
    folder: Path, subscribers: int, relay_port: int, **env: str
) -> Iterator[tuple[DaemonProcess, SoakTarget, str]]:
    """`digestd run` on a fresh SQLite file with `subscribers` due digests (sent to the relay
    on 127.0.0.1:`relay_port` by its first send run, awaited here), the web and the SMTP
    listener on random ports; yields (process, target, database URL)."""
    from sqlalchemy import create_engine, text

    from digestd.core.config import Settings
    from digestd.inbound.addresses import verp_address

    url = f"sqlite:///{folder / 'soak.db'}"
    seed_due_deliveries(url, subscribers)
    engine = create_engine(url)
    with engine.connect() as conn:
        sql = "SELECT d.id, s.email FROM delivery d JOIN subscriber s ON s.id = d.subscriber_id"
        rows = [(int(i), str(e)) for i, e in conn.execute(text(sql))]
    engine.dispose()
    settings = Settings(database_url=url, secret_key=SECRET, bounce_address=BOUNCE_ADDRESS)
    deliveries = [(verp_address(settings, SECRET, i), email) for i, email in rows]
    variables = daemon_env(
        url,
        relay_port,
        DIGESTD_BOUNCE_ADDRESS=BOUNCE_ADDRESS,
        DIGESTD_INBOUND_LISTEN="127.0.0.1:0",
        **env,
    )
    process = DaemonProcess(variables)
    try:
        line = process.wait_for_line(r"digestd running .*web=http://127\.0\.0\.1:\d+", 60)
        web = re.search(r"web=http://127\.0\.0\.1:(\d+)", line)
        smtp = re.search(r"inbound_smtp=127\.0\.0\.1:(\d+)", line)
        assert web and smtp, line
        deadline = time.monotonic() + 120
        while sent_digests(process) < subscribers:  # the scheduler's first send run
            assert time.monotonic() < deadline and process.proc.poll() is None, process.output
            time.sleep(0.1)  # paces the check of another process's log (bounded)
        target = SoakTarget(process.proc.pid, int(smtp.group(1)), int(web.group(1)), deliveries)
        yield process, target, url
    finally:
        process.stop()


def recorded(url: str) -> Counter[str]:
    """The inbound rows of the soak's database, by kind."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT kind, COUNT(*) FROM inbound GROUP BY kind"))
            return Counter({str(kind): int(n) for kind, n in rows})
    finally:
        engine.dispose()
