"""All doctor checks in order: database, SMTP, web, secret, sources, DNS."""

from __future__ import annotations

import asyncio
import ssl
from email.utils import parseaddr

from digestd.core.config import dns_server_address
from digestd.core.context import AppContext
from digestd.doctor import dns, setup
from digestd.doctor.result import Check
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
    )
    return checks
