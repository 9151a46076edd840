"""All doctor checks in order: database, SMTP, web, secret, sources, DNS."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from email.utils import parseaddr

from digestd.core.config import Settings, dns_server_address
from digestd.core.context import AppContext
from digestd.doctor import dkim, dns, setup
from digestd.doctor.result import Check, fail
from digestd.doctor.smtp import check_smtp


def _domain(address: str | None) -> str | None:
    _, addr = parseaddr(address or "")
    domain = addr.rpartition("@")[2].strip().lower().rstrip(".")
    return domain or None


def run_doctor(
    ctx: AppContext,
    *,
    nameserver: tuple[str, int] | None = None,
    tls_context: ssl.SSLContext | None = None,
) -> list[Check]:
    """Every check's verdict. DNS goes to `nameserver`, else DIGESTD_DNS_SERVER, else the
    system's resolver; TLS trusts `tls_context`, else the system's store."""
    s = ctx.settings
    checks = [setup.database(ctx)]
    checks += asyncio.run(check_smtp(s, tls_context))
    checks += [setup.base_url(s), setup.web_listener(s), setup.secret_key(s)]
    checks += setup.sources(ctx)
    if nameserver is None and s.dns_server:
        nameserver = dns_server_address(s.dns_server)
    from_domain = _domain(s.from_address) or "localhost"
    # DIGESTD_BOUNCE_ADDRESS's domain is the envelope sender of digests (VERP) and their MX.
    bounce_domain = _domain(s.bounce_address)
    checks += dns.check_domains(
        dns.Lookup(nameserver),
        from_domain,
        bounce_domain if bounce_domain != from_domain else None,
        s.dkim_selector,
        _signing(s, from_domain) if s.dkim_key_file else None,
        relay_host=s.smtp_host,
    )
    return checks


def _signing(s: Settings, from_domain: str) -> Callable[[dns.Lookup], tuple[list[Check], bool]]:
    """The DKIM checks of digestd's own keys (DIGESTD_DKIM_KEY_FILE and the Ed25519 one)."""
    domain = s.dkim_domain or from_domain

    def check(lookup: dns.Lookup) -> tuple[list[Check], bool]:
        selector = s.dkim_selector or ""
        keys = [(selector, s.dkim_key_file, "DIGESTD_DKIM_KEY_FILE")]
        if s.dkim_ed25519_key_file:
            ed_selector = s.dkim_ed25519_selector or f"{selector}-ed25519"
            keys.append((ed_selector, s.dkim_ed25519_key_file, "DIGESTD_DKIM_ED25519_KEY_FILE"))
        checks = [
            dkim.key_published(lookup, sel, domain, path, setting)
            for sel, path, setting in keys
            if path is not None
        ]
        passed = all(c.status != "fail" for c in checks)
        # DMARC counts DKIM only when d= aligns with the From domain (relaxed: same
        # organization; doctor's alignment check says what else aligns).
        if dns.org_domain(domain) != dns.org_domain(from_domain):
            checks.append(
                fail(
                    f"dkim d={domain}",
                    f"signatures are for {domain}, which does not align with From {from_domain}",
                    "set DIGESTD_DKIM_DOMAIN to the From domain (or leave it unset)",
                )
            )
            passed = False
        return checks, passed

    return check
