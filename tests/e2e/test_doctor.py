"""`digestd doctor` against real servers on 127.0.0.1: the aiosmtpd relay, the web listener,
and a DNS server answering with the test's records. Good setup: every line ok, exit 0;
broken records and a wrong password: the promised fail lines, exit 1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Source, utcnow
from tests.support.cli import run_cli
from tests.support.dns import DnsTestServer, mx, txt, zone
from tests.support.smtp import SmtpTestServer
from tests.support.web import running_web

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

DOMAIN = "papers-digest.net"
BOUNCE = f"bounce.{DOMAIN}"  # the envelope (VERP) domain: its SPF and MX matter
SELECTOR = "s2026"
USER, PASSWORD = "digest-relay", "relay-password-0123"
GOOD = zone(
    txt(DOMAIN, "v=spf1 mx include:_spf.relay.example -all", "google-site-verification=abc"),
    txt(f"_dmarc.{DOMAIN}", f"v=DMARC1; p=quarantine; rua=mailto:dmarc@{DOMAIN}"),
    txt(f"{SELECTOR}._domainkey.{DOMAIN}", "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A"),
    mx(DOMAIN, (10, f"mx1.{DOMAIN}"), (20, f"mx2.{DOMAIN}")),
    txt(BOUNCE, "v=spf1 include:_spf.relay.example -all"),
    mx(BOUNCE, (10, f"inbound.{DOMAIN}")),
)
BAD = zone(
    txt(DOMAIN, "google-site-verification=abc"),  # no SPF
    txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=none"),  # monitoring only
    txt(f"other._domainkey.{DOMAIN}", "v=DKIM1; p=MIIB"),  # not the configured selector
)


@pytest.fixture
def dns_server() -> Iterator[DnsTestServer]:
    server = DnsTestServer().start()
    yield server
    server.stop()


@pytest.fixture
def relay() -> Iterator[SmtpTestServer]:
    server = SmtpTestServer(advertise=("PIPELINING",), auth=(USER, PASSWORD)).start()
    yield server
    server.stop()


@pytest.fixture
def setup(tmp_path: Path, relay: SmtpTestServer, smtp_server: SmtpTestServer) -> Iterator[dict]:
    """A migrated database with one freshly fetched source, and its running web listener."""
    url = f"sqlite:///{tmp_path / 'digestd.db'}"
    ctx = AppContext(Settings(database_url=url, secret_key="doctor-secret-0123456789"))
    ctx.migrate()
    with session_scope(ctx.engine) as session:
        session.add(
            Source(
                url="https://feeds.example/arxiv.xml",
                name="arxiv",
                kind="rss",
                created_at=utcnow(),
                last_fetch_at=utcnow(),
                last_status="ok",
            )
        )
    with running_web(ctx, smtp_server) as web:
        yield {
            "DIGESTD_DATABASE_URL": url,
            "DIGESTD_SECRET_KEY": "doctor-secret-0123456789",
            "DIGESTD_SMTP_HOST": "127.0.0.1",
            "DIGESTD_SMTP_PORT": str(relay.port),
            "DIGESTD_SMTP_USERNAME": USER,
            "DIGESTD_SMTP_PASSWORD": PASSWORD,
            "DIGESTD_FROM": f"Paper Digest <digest@{DOMAIN}>",
            "DIGESTD_LISTEN": web.base_url.removeprefix("http://"),
            "DIGESTD_BASE_URL": web.base_url,
            "DIGESTD_DKIM_SELECTOR": SELECTOR,
            "DIGESTD_BOUNCE_ADDRESS": f"bounces@{BOUNCE}",
        }
    ctx.dispose()


def test_doctor_good_setup_is_all_ok(setup: dict, dns_server: DnsTestServer) -> None:
    dns_server.set(GOOD)
    env = {**setup, "DIGESTD_DNS_SERVER": "{}:{}".format(*dns_server.address)}
    result = run_cli("doctor", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if not line.startswith("      ")]
    verdicts = lines[:-1]
    assert all(line.startswith("ok ") for line in verdicts), result.stdout
    shown = "\n".join(verdicts)
    for name in ("database", "smtp connect", "smtp tls", "smtp auth", "smtp pipelining",
                 "smtp size", "base url", "web listener", "secret key", "sources",
                 f"spf {DOMAIN}", f"dmarc {DOMAIN}", f"dkim {SELECTOR}._domainkey.{DOMAIN}",
                 f"alignment {DOMAIN}", f"mx {DOMAIN}",
                 f"spf {BOUNCE}", f"mx {BOUNCE}"):  # fmt: skip
        assert f"  {name}:" in shown, name
    assert lines[-1] == f"{len(verdicts)} ok, 0 warn, 0 fail"
    assert (DOMAIN, "TXT") in dns_server.queries  # asked our server, not the internet


def test_doctor_bad_records_and_password_fail(setup: dict, dns_server: DnsTestServer) -> None:
    dns_server.set(BAD)
    env = {
        **setup,
        "DIGESTD_DNS_SERVER": "{}:{}".format(*dns_server.address),
        "DIGESTD_SMTP_PASSWORD": "wrong-password",
    }
    result = run_cli("doctor", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "fail  smtp auth: login as digest-relay refused: (535" in out
    assert (
        f"fail  spf {DOMAIN}: no SPF record\n      fix: publish one TXT record at {DOMAIN}" in out
    )
    assert f"warn  dmarc {DOMAIN}: p=none" in out
    assert f"fail  dkim {SELECTOR}._domainkey.{DOMAIN}: no DKIM key published" in out
    # The bounce domain aligns (relaxed): the real cause is its missing SPF record, and the
    # fix is to publish one there (not the setup already in use). Lines fit 80 columns,
    # broken between words.
    said = " ".join(out.split())
    assert f"fail alignment {DOMAIN}: SPF cannot pass: {BOUNCE} has no SPF record" in said
    assert f"fix: publish one TXT record at {BOUNCE}" in said
    assert "send bounces to an address" not in said
    # Only a single word longer than a line (a database path) may stand alone, whole.
    too_wide = [line for line in out.splitlines() if len(line) > 80 and len(line.split()) > 1]
    assert not too_wide, too_wide
    assert f"fail  mx {DOMAIN}: no MX record" in out
    assert "wrong-password" not in out + result.stderr

    as_json = run_cli("doctor", "--json", env=env)
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    failed = {c["name"] for c in report["checks"] if c["status"] == "fail"}
    assert failed == {
        "smtp auth",
        f"spf {DOMAIN}",
        f"dkim {SELECTOR}._domainkey.{DOMAIN}",
        f"alignment {DOMAIN}",
        f"mx {DOMAIN}",
        f"spf {BOUNCE}",
        f"mx {BOUNCE}",
    }
    assert report["fail"] == 7 and report["warn"] == 1
    assert all(c["fix"] for c in report["checks"] if c["status"] != "ok")
