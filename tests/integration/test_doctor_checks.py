"""Doctor checks one by one, in process, against the real DNS and SMTP test servers: the
bounce domain's alignment, DMARC inherited from the organization, production rules."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace

import pytest

from digestd.core.config import Settings
from digestd.doctor import dns, setup
from digestd.doctor.smtp import check_smtp
from tests.support.dns import DnsTestServer, mx, txt, zone
from tests.support.smtp import SmtpTestServer

FROM = "news.papers-digest.co.uk"
ORG = "papers-digest.co.uk"
BOUNCES = f"bounces.{ORG}"


@pytest.fixture(scope="module")
def dns_server() -> Iterator[DnsTestServer]:
    server = DnsTestServer().start()
    yield server
    server.stop()


def verdicts(checks: list) -> dict[str, str]:
    return {c.name: c.status for c in checks}


def records(aspf: str) -> dict:
    return zone(
        txt(FROM, "v=spf1 mx -all"),
        txt(BOUNCES, "v=spf1 include:relay.example ~all"),
        # No record at _dmarc.news…: the organization's applies, with its sp= for subdomains.
        txt(f"_dmarc.{ORG}", f"v=DMARC1; p=none; sp=reject; aspf={aspf}"),
        mx(FROM, (10, f"mx.{ORG}")),
        mx(BOUNCES, (10, f"mx.{ORG}")),
    )


def test_bounce_domain_aligns_relaxed_not_strict(dns_server: DnsTestServer) -> None:
    lookup = dns.Lookup(dns_server.address)
    dns_server.set(records("r"))
    relaxed = dns.check_domains(lookup, FROM, BOUNCES, None)
    got = verdicts(relaxed)
    # co.uk is a public suffix: the organization is papers-digest.co.uk, not co.uk.
    assert got[f"alignment {FROM}"] == "ok"
    assert got[f"spf {BOUNCES}"] == "ok" and got[f"mx {BOUNCES}"] == "ok"
    assert got[f"dmarc {FROM}"] == "ok"  # sp=reject inherited from _dmarc.papers-digest.co.uk
    assert got["dkim"] == "warn"  # no selector configured

    dns_server.set(records("s"))
    strict = verdicts(dns.check_domains(lookup, FROM, BOUNCES, None))
    assert strict[f"alignment {FROM}"] == "fail"


def test_placeholder_domain_and_silent_dns() -> None:
    [check] = dns.check_domains(dns.Lookup(("127.0.0.1", 9)), "example.org", None, None)
    assert (check.name, check.status) == ("from domain", "fail")
    # Nothing answers on port 9: one fail line naming DNS, not a traceback.
    lookup = dns.Lookup(("127.0.0.1", 9))
    lookup.resolver.lifetime = lookup.resolver.timeout = 0.3
    [check] = dns.check_domains(lookup, FROM, None, None)
    assert (check.name, check.status) == ("dns", "fail")


def test_production_needs_https_and_a_set_secret() -> None:
    local = Settings(base_url="http://127.0.0.1:8025")
    assert setup.base_url(local).status == "ok"
    assert setup.secret_key(local).status == "warn"
    public = replace(local, base_url="http://digest.papers-digest.net")
    assert setup.base_url(public).status == "fail"
    assert setup.secret_key(public).status == "fail"
    secure = replace(public, base_url="https://digest.papers-digest.net", secret_key="x" * 32)
    assert setup.base_url(secure).status == "ok"
    assert setup.secret_key(secure).status == "ok"


def test_starttls_configured_but_not_offered(smtp_server: SmtpTestServer) -> None:
    settings = Settings(smtp_port=smtp_server.port, smtp_tls="starttls")
    got = verdicts(asyncio.run(check_smtp(settings)))
    assert got == {"smtp connect": "ok", "smtp ehlo": "ok", "smtp tls": "fail"}
    # aiosmtpd does not announce PIPELINING: a warning, not a failure.
    plain = verdicts(asyncio.run(check_smtp(replace(settings, smtp_tls="none"))))
    assert plain["smtp pipelining"] == "warn" and plain["smtp size"] == "ok"
    # Whether non-ASCII addresses can be taken, next to what sign-ups assume: this server
    # does not offer SMTPUTF8, so promising it is a warning.
    promised = replace(settings, smtp_tls="none", smtp_smtputf8=True)
    assert verdicts(asyncio.run(check_smtp(promised)))["smtp smtputf8"] == "warn"
    assert plain["smtp smtputf8"] == "ok"
    assert smtp_server.messages == []  # the doctor never sends


def test_spf_names_the_real_cause_and_the_fix_that_changes_it(dns_server: DnsTestServer) -> None:
    lookup = dns.Lookup(dns_server.address)
    relay = "smtp.sendgrid.net"

    def run(bounce_spf: str | None, aspf: str = "r") -> dict:
        found = [
            txt(FROM, "v=spf1 mx -all"),
            txt(f"_dmarc.{ORG}", f"v=DMARC1; p=reject; aspf={aspf}"),
        ]
        if bounce_spf:
            found.append(txt(BOUNCES, bounce_spf))
        dns_server.set(zone(*found))
        checks = dns.check_domains(lookup, FROM, BOUNCES, None, relay_host=relay)
        return {c.name: c for c in checks}

    # A missing record at the (aligned) bounce subdomain: named, and the fix publishes one.
    missing = run(None)
    align = missing[f"alignment {FROM}"]
    assert align.status == "fail"
    assert f"SPF cannot pass: {BOUNCES} has no SPF record" in align.detail
    assert align.fix.startswith(
        f'publish one TXT record at {BOUNCES}: "v=spf1 include:sendgrid.net -all"'
    )
    assert "send bounces" not in align.fix

    # The wrong include: the relay is not named, and ~all vs -all says what happens to it.
    soft = run("v=spf1 include:relay.example ~all")[f"spf {BOUNCES}"]
    assert soft.status == "fail" and "include:sendgrid.net" in soft.detail
    assert "softfail (~all)" in soft.detail
    assert (
        soft.fix
        == 'add include:sendgrid.net: "v=spf1 include:relay.example include:sendgrid.net ~all"'
    )
    hard = run("v=spf1 include:relay.example -all")[f"spf {BOUNCES}"]
    assert "fail (-all)" in hard.detail
    # The printed fix is what changes the answer: with it, SPF and alignment pass.
    fixed = run("v=spf1 include:relay.example include:sendgrid.net ~all")
    assert fixed[f"spf {BOUNCES}"].status == "ok" and "~all" in fixed[f"spf {BOUNCES}"].detail
    assert fixed[f"alignment {FROM}"].status == "ok"
    # The From domain's own record is not asked for the relay (bounces use another domain).
    assert fixed[f"spf {FROM}"].status == "ok"

    # Strict alignment within one organization: the fix is aspf=r or the exact domain.
    strict = run("v=spf1 include:sendgrid.net -all", aspf="s")[f"alignment {FROM}"]
    assert strict.status == "fail" and "not the same name" in strict.detail
    assert strict.fix.startswith(f"set aspf=r in the DMARC record of {ORG}")
