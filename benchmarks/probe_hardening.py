"""Issue 23 re-probed as its attacker did it: one line per item with its figure (not a test).

    .venv/bin/python benchmarks/probe_hardening.py [--only ITEM ...] [--csv-mb 100]
        [--import-limit 3600] [--slow-connections 1000]

Everything runs on loopback, against servers this script starts and stops itself: a fresh
SQLite file, `digestd web` and `digestd inbound --listen` as real processes on it (default
limits, except DIGESTD_INBOUND_TIMEOUT=2 so the listener's timers are reached in seconds),
an aiosmtpd relay that records what they mail, and the CLI as a subprocess. Every loop is
bounded in count and time. Findings 1-5 are benchmarks/probe_findings.py (items finding-1
... finding-5: a 400 MB line, forged reports, a 40,000-block DSN, formulas in an export, 30
forged command mails); finding 6 is benchmarks/bench_db_outage.py (PostgreSQL). Finding
7's items, in the issue's order (the first two are benchmarks/probe_load.py):

- slowloris: N connections each send a request line and one header, then a header line a
  second (never finishing): how many are open after DIGESTD_WEB_HEADER_TIMEOUT (10 s) and
  what GETs meanwhile get, in how long; then 15 s of the same with each closed connection
  opened again (a sustained attack) and GETs meanwhile;
- import: a CSV of --csv-mb MB (bench_import's rows) imported with `subscribers import`
  while `/healthz` and `/` are asked every 0.25 s from the web process on the same file
  (figures so far every 120 s; the import is stopped after --import-limit seconds);
- per-address: three sign-ups and three `help` mails for one address (both orders): the
  mails it gets (README: at most 3 a day that are not digests);
- sources: `sources add` of a link-local and a file:// URL, and a redirect from a feed
  standing for a public site (the guard's policy, as tests/integration/test_ingest_guard.py
  does) to loopback, link-local and localhost;
- sign-up refusals: a NUL in the name, a 65-octet local part, a non-ASCII local part;
- deep JSON (30,000 levels), two 4 MB titles ingested (size of `/`), `GET /archive/` with a
  foreign Host (where it points), and the listener's DATA from a slow steady sender past
  the idle timeout and past the session cap (with a trickling and a silent one beside it).

The form's timing by address state is benchmarks/bench_signup.py. Load average is printed
with every timing, as the machine may be shared.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from benchmarks.probe_findings import (  # noqa: E402
    finding_1,
    finding_2,
    finding_3,
    finding_4,
    finding_5,
    probe_listener,
)
from benchmarks.probe_load import load, probe_import, probe_slowloris, say  # noqa: E402
from tests.support.smtp import SmtpTestServer, free_port  # noqa: E402

BOUNCE = "bounces@bounce.example.org"
REQUEST = "bounces+request@bounce.example.org"


class Site:
    """`digestd web` and `digestd inbound --listen` on one fresh SQLite file, and a relay."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.relay = SmtpTestServer().start()
        self.web_port, self.smtp_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.web_port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("DIGESTD_")},
            "DIGESTD_DATABASE_URL": f"sqlite:///{tmp}/probe.db",
            "DIGESTD_SECRET_KEY": "probe-secret-key-0123456789",
            "DIGESTD_BASE_URL": self.base,
            "DIGESTD_LISTEN": f"127.0.0.1:{self.web_port}",
            "DIGESTD_SMTP_HOST": "127.0.0.1",
            "DIGESTD_SMTP_PORT": str(self.relay.port),
            "DIGESTD_SMTP_TLS": "none",
            "DIGESTD_FROM": "Digest <digest@example.org>",
            "DIGESTD_BOUNCE_ADDRESS": BOUNCE,
            "DIGESTD_INBOUND_LISTEN": f"127.0.0.1:{self.smtp_port}",
            "DIGESTD_INBOUND_TIMEOUT": "2",
            "DIGESTD_LOG_LEVEL": "WARNING",
        }
        self.cli("db", "upgrade")
        self.procs = [self.spawn("web"), self.spawn("inbound", "--listen")]
        try:
            self.wait_ready()
        except BaseException:
            self.close()
            raise

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{args[0]}.log").open("wb")
        return subprocess.Popen(
            [sys.executable, "-m", "digestd", *args],
            env=self.env,
            cwd=self.tmp,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def cli(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "digestd", *args],
            env=self.env,
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, httpx.HTTPError):
                httpx.get(f"{self.base}/healthz", timeout=2)
                socket.create_connection(("127.0.0.1", self.smtp_port), timeout=2).close()
                return
            time.sleep(0.2)
        raise SystemExit("the servers did not start within 60 s")

    def mails_to(self, address: str) -> int:
        return sum(address in m.recipients for m in self.relay.messages)

    def subjects_to(self, address: str) -> dict[str, int]:
        subjects = (str(m.message["Subject"]) for m in self.relay.messages)
        return dict(
            Counter(
                s
                for s, m in zip(subjects, self.relay.messages, strict=True)
                if address in m.recipients
            )
        )

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.relay.stop()


# ---- per-address total ---------------------------------------------------------------------


def sign_up(site: Site, email: str, source: str, **fields: str) -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=site.base, transport=transport, timeout=30) as client:
        return client.post("/subscribe", json={"email": email, **fields})


def mail_command(site: Site, email: str, source: str, command: str) -> str:
    body = f"From: {email}\r\nTo: {REQUEST}\r\nSubject: {command}\r\n\r\n{command}\r\n"
    with smtplib.SMTP("127.0.0.1", site.smtp_port, timeout=30, source_address=(source, 0)) as s:
        s.ehlo("client.example.net")
        s.mail(email)
        s.rcpt(REQUEST)
        code, _ = s.data(body.encode())
    return str(code)


def settled(count: Callable[[], int], seconds: float = 20.0) -> int:
    """The count once it has not moved for 3 s (at most `seconds`)."""
    deadline = time.monotonic() + seconds
    last, since = count(), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < 3:
        time.sleep(0.2)
        now = count()
        if now != last:
            last, since = now, time.monotonic()
    return last


def probe_per_address(site: Site) -> None:
    # Each sign-up and each mail from its own loopback address, so the per-client limits
    # (5 sign-ups a minute, 5 replies an hour per sender) are not what stops them.
    results = []
    for n, order in enumerate(("sign-ups first", "commands first")):
        email = f"total{n}@example.org"
        steps = ["signup"] * 3 + ["help"] * 3
        if order == "commands first":
            steps.reverse()
        answers = []
        for i, step in enumerate(steps):
            source = f"127.0.{10 + n}.{i + 1}"
            if step == "signup":
                answers.append(str(sign_up(site, email, source).status_code))
            else:
                answers.append(mail_command(site, email, source, "help"))
        got = settled(lambda e=email: site.mails_to(e))
        results.append(
            f"{order}: answers {'/'.join(answers)}, mails received {got} {site.subjects_to(email)}"
        )
    say("per-address", "3 sign-ups + 3 'help' mails, one address; " + "; ".join(results))


# ---- sources -------------------------------------------------------------------------------


def probe_sources(site: Site) -> None:
    for url in ("http://169.254.169.254/latest/meta-data/", "file:///etc/passwd"):
        got = site.cli("sources", "add", url, timeout=120)
        line = (got.stderr.strip() or got.stdout.strip()).splitlines()[-1][:100]
        say("sources add", f"{url}: exit {got.returncode}: {line}")
    import asyncio
    import ipaddress

    from digestd.core.config import Settings
    from digestd.core.netaddr import is_public
    from digestd.ingest.fetch import FetchError, fetch, make_client
    from tests.support.feeds import Reply, feed_server

    settings = Settings(database_url="sqlite://", secret_key="probe-secret-key-0123456789")
    with feed_server() as public, feed_server() as internal:
        internal.serve("/secret", Reply(body=b"root:x:0:0"))
        port = int(public.base.rsplit(":", 1)[1])
        inner = int(internal.base.rsplit(":", 1)[1])

        def policy(address: Any, at: int) -> bool:  # this one server stands for the internet
            return (address == ipaddress.ip_address("127.0.0.1") and at == port) or is_public(
                address
            )

        for target in (
            internal.url("/secret"),
            f"http://localhost:{inner}/secret",
            "http://169.254.169.254/latest/meta-data/",
        ):
            public.serve("/feed", Reply(redirect_to=target))

            async def get() -> str:
                async with make_client(settings, policy=policy) as client:
                    try:
                        got = await fetch(client, public.url("/feed"), settings=settings)
                    except FetchError as exc:
                        return str(exc)[:90]
                    return f"FETCHED {got.status}"

            outcome = asyncio.run(get())
            say(
                "redirect",
                f"public feed -> {target}: {outcome}; "
                f"internal hits {len(internal.hits('/secret'))}",
            )


# ---- sign-up refusals, deep JSON, foreign Host, titles -------------------------------------


def probe_signups(site: Site) -> None:
    cases = {
        "NUL in the name": ("nul@example.org", {"name": "Eve\x00Bcc: x@evil.example"}),
        "65-octet local part": ("a" * 65 + "@example.org", {}),
        "non-ASCII local part (relay without SMTPUTF8)": ("jörg@example.org", {}),
    }
    for n, (what, (email, fields)) in enumerate(cases.items()):
        got = sign_up(site, email, f"127.0.20.{n + 1}", **fields)
        time.sleep(1)
        mailed = site.mails_to(email)
        say("sign-up", f"{what}: {got.status_code} {got.text[:110]!r}; mails to it {mailed}")


def probe_web(site: Site) -> None:
    deep = b"[" * 30_000 + b"]" * 30_000
    got = httpx.post(
        f"{site.base}/subscribe",
        content=deep,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    say("deep JSON", f"30,000 levels ({len(deep)} bytes): {got.status_code} {got.text[:80]!r}")
    got = httpx.get(f"{site.base}/archive/", headers={"Host": "evil.example"}, timeout=30)
    say(
        "foreign Host",
        f"GET /archive/ Host: evil.example: {got.status_code} -> {got.headers.get('location')}",
    )


def probe_titles(site: Site) -> None:
    now = format_datetime(datetime.now(tz=UTC))
    items = "".join(
        f"<item><title>{('Huge title ' * 400_000)[: 4 * 1024 * 1024]}</title>"
        f"<link>https://arxiv.org/abs/2612.0000{n}</link><guid>https://arxiv.org/abs/2612.0000{n}</guid>"
        f"<pubDate>{now}</pubDate><description>Short.</description></item>"
        for n in (1, 2)
    )
    feed = site.tmp / "huge.xml"
    feed.write_text(
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        f"<link>https://example.org/</link><description>d</description>{items}</channel></rss>",
        encoding="utf-8",
    )
    added = site.cli("sources", "add", str(feed), timeout=300)
    fetched = site.cli("sources", "fetch", timeout=600)
    line = (fetched.stdout.strip() or fetched.stderr.strip()).splitlines()[-1][:100]
    page = httpx.get(f"{site.base}/", timeout=60)
    stored = site.cli("entries", "list", timeout=120).stdout.count("Huge title")
    say(
        "titles",
        f"two 4 MB titles ({feed.stat().st_size / 1e6:.1f} MB feed; add exit {added.returncode}, "
        f"fetch exit {fetched.returncode}: {line!r}): / is {len(page.content) / 1024:.1f} KiB "
        f"({page.status_code}), titles shown {page.text.count('Huge title') > 0}, in entries "
        f"list {stored > 0}",
    )


ITEMS: dict[str, Callable[[Site, argparse.Namespace], None]] = {
    "signups": lambda site, a: probe_signups(site),
    "web": lambda site, a: probe_web(site),
    "per-address": lambda site, a: probe_per_address(site),
    "sources": lambda site, a: probe_sources(site),
    "listener": lambda site, a: probe_listener(site),
    "finding-1": lambda site, a: finding_1(site),
    "finding-2": lambda site, a: finding_2(site),
    "finding-3": lambda site, a: finding_3(site),
    "finding-4": lambda site, a: finding_4(site),
    "finding-5": lambda site, a: finding_5(site),
    "titles": lambda site, a: probe_titles(site),
    "slowloris": lambda site, a: probe_slowloris(site, a.slow_connections),
    "import": lambda site, a: probe_import(site, a.csv_mb, a.import_limit),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=list(ITEMS), help="these items only")
    parser.add_argument("--csv-mb", type=float, default=100.0)
    parser.add_argument("--import-limit", type=float, default=3600.0, help="seconds")
    parser.add_argument("--slow-connections", type=int, default=1000)
    args = parser.parse_args()
    print(f"probe_hardening: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {load()}")
    with tempfile.TemporaryDirectory() as tmp:
        site = Site(Path(tmp))
        try:
            for name in args.only or list(ITEMS):
                ITEMS[name](site, args)
        finally:
            site.close()


if __name__ == "__main__":
    main()
