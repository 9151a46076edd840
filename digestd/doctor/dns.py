"""DNS checks of the sending domains: SPF, DMARC (policy and alignment), DKIM, MX.

Lookups go through dnspython, to the system's resolver or to DIGESTD_DNS_SERVER (tests
start a real DNS server on 127.0.0.1). Organizational domains (for relaxed alignment) come
from the Public Suffix List shipped with `publicsuffixlist` (no download).

What is checked is what receivers such as Gmail and Yahoo require of bulk senders: an SPF
record, a DMARC record, DKIM signing, alignment of the From domain with SPF or DKIM, and a
domain that can receive mail (replies, bounces). Whether SPF passes for the relay's IP
address is not decided here: that depends on the relay, which only a received message shows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import dns.exception
import dns.resolver
from publicsuffixlist import PublicSuffixList

from digestd.doctor.result import Check, fail, ok, warn

TIMEOUT_SECONDS = 5.0
# RFC 2606 names: a From address there was never changed from the example.
PLACEHOLDER_DOMAINS = ("example.com", "example.net", "example.org")


class DnsUnavailable(RuntimeError):
    """The DNS server did not answer (timeout, refused, SERVFAIL); one line."""


class Lookup:
    """TXT and MX lookups; "no such name" and "no such record" are both an empty answer."""

    def __init__(self, nameserver: tuple[str, int] | None = None) -> None:
        if nameserver is None:
            resolver = dns.resolver.Resolver()
        else:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [nameserver[0]]
            resolver.port = nameserver[1]
        resolver.timeout = resolver.lifetime = TIMEOUT_SECONDS
        self.resolver = resolver

    def _query(self, name: str, rdtype: str) -> list[object]:
        try:
            return list(self.resolver.resolve(name, rdtype, search=False))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.Timeout:
            raise DnsUnavailable(
                f"no answer for {name} {rdtype} within {TIMEOUT_SECONDS:g}s"
            ) from None
        except dns.resolver.NoNameservers as exc:
            raise DnsUnavailable(f"the DNS server failed on {name} {rdtype}: {exc}") from None

    def txt(self, name: str) -> list[str]:
        """Each TXT record as one string (a record's character-strings are concatenated)."""
        return [
            b"".join(r.strings).decode("utf-8", "replace")  # type: ignore[attr-defined]
            for r in self._query(name, "TXT")
        ]

    def mx(self, name: str) -> list[tuple[int, str]]:
        return [
            (int(r.preference), str(r.exchange).rstrip("."))  # type: ignore[attr-defined]
            for r in self._query(name, "MX")
        ]


@lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    return PublicSuffixList()


def org_domain(domain: str) -> str:
    """The registrable ("organizational") domain: mail.example.co.uk → example.co.uk."""
    return _psl().privatesuffix(domain.lower()) or domain.lower()


def tags(record: str) -> dict[str, str]:
    """`k=v; k=v` tags of a DMARC or DKIM record, keys lowercased."""
    out: dict[str, str] = {}
    for part in record.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            out[key.strip().lower()] = value.strip()
    return out


def is_placeholder(domain: str) -> bool:
    return any(domain == p or domain.endswith("." + p) for p in PLACEHOLDER_DOMAINS)


# ---- the checks ------------------------------------------------------------------------


def spf(lookup: Lookup, domain: str) -> tuple[Check, bool]:
    """The SPF record of a domain (and whether there is exactly one usable record)."""
    name = f"spf {domain}"
    records = [t for t in lookup.txt(domain) if t.lower().startswith("v=spf1")]
    example = f'publish one TXT record at {domain} such as "v=spf1 mx include:<your relay> -all"'
    if not records:
        return fail(name, "no SPF record", example), False
    if len(records) > 1:
        return fail(
            name,
            f"{len(records)} SPF records (receivers treat that as an error)",
            f"merge them into one TXT record at {domain}",
        ), False
    record = records[0]
    terms = record.lower().split()
    if "+all" in terms or "all" in terms:
        return fail(
            name, f"{record!r} lets anyone send as {domain}", "end the record with -all (or ~all)"
        ), False
    if not any(t.endswith("all") for t in terms) and not any(
        t.startswith("redirect=") for t in terms
    ):
        return warn(name, f"{record!r} has no 'all' rule", "end the record with -all or ~all"), True
    if "?all" in terms:
        return warn(name, f"{record!r} is neutral (?all)", "end the record with -all or ~all"), True
    return ok(name, record), True


@dataclass(frozen=True)
class Dmarc:
    policy: str
    aspf: str
    adkim: str
    found_at: str


def _dmarc_records(lookup: Lookup, domain: str) -> list[str]:
    return [t for t in lookup.txt(f"_dmarc.{domain}") if t.lower().startswith("v=dmarc1")]


def dmarc(lookup: Lookup, domain: str) -> tuple[Check, Dmarc | None]:
    """The DMARC policy for mail From `domain` (its own record, else its organization's)."""
    name = f"dmarc {domain}"
    org = org_domain(domain)
    where, inherited = domain, False
    records = _dmarc_records(lookup, domain)
    if not records and org != domain:
        where, inherited = org, True
        records = _dmarc_records(lookup, org)
    if not records:
        return fail(
            name,
            f"no DMARC record at _dmarc.{domain}",
            f'publish TXT at _dmarc.{domain}: "v=DMARC1; p=none; rua=mailto:dmarc@{domain}", '
            "then move to p=quarantine",
        ), None
    if len(records) > 1:
        return fail(
            name,
            f"{len(records)} DMARC records at _dmarc.{where}",
            f"keep exactly one TXT record at _dmarc.{where}",
        ), None
    t = tags(records[0])
    # A subdomain without its own record gets the organization's sp= (else its p=).
    policy = (t.get("sp") if inherited else None) or t.get("p", "")
    policy = policy.lower()
    found = Dmarc(policy, t.get("aspf", "r").lower(), t.get("adkim", "r").lower(), where)
    shown = f"p={policy} (at _dmarc.{where})"
    if policy not in ("none", "quarantine", "reject"):
        return fail(
            name,
            f"DMARC record without a valid policy: {records[0]!r}",
            "set p=none, p=quarantine or p=reject",
        ), None
    if policy == "none":
        return warn(
            name,
            f"{shown}: monitoring only, spoofed mail is still delivered",
            "once reports show your mail aligns, set p=quarantine",
        ), found
    return ok(name, shown), found


def dkim(lookup: Lookup, selector: str | None, domain: str) -> tuple[Check, bool]:
    """The DKIM public key of the configured selector (d= the From domain)."""
    if not selector:
        return warn(
            "dkim",
            "no DKIM selector configured, so DKIM is not checked",
            "set DIGESTD_DKIM_SELECTOR to the selector your mail server signs with "
            "(Gmail and Yahoo require DKIM for bulk mail)",
        ), False
    where = f"{selector}._domainkey.{domain}"
    name = f"dkim {where}"
    records = [r for r in lookup.txt(where) if "p=" in r.lower()]
    if not records:
        return fail(
            name,
            "no DKIM key published",
            f"publish the public key your mail server gives you as TXT at {where}",
        ), False
    key = tags(records[0]).get("p", "")
    if not key:
        return fail(
            name,
            "the key is revoked (empty p=)",
            "publish the current key, or set the selector in use",
        ), False
    return ok(name, f"key published ({len(key)} base64 characters)"), True


def alignment(
    from_domain: str, envelope_domain: str, policy: Dmarc | None, spf_ok: bool, dkim_ok: bool
) -> Check:
    """DMARC passes only if SPF (for the envelope domain) or DKIM aligns with the From domain."""
    name = f"alignment {from_domain}"
    aspf = policy.aspf if policy else "r"
    adkim = policy.adkim if policy else "r"
    if aspf == "s":
        spf_aligned = envelope_domain == from_domain
    else:
        spf_aligned = org_domain(envelope_domain) == org_domain(from_domain)
    spf_aligned = spf_aligned and spf_ok
    seen = []
    seen.append(
        f"SPF {'aligned' if spf_aligned else 'not aligned'} "
        f"(envelope {envelope_domain}, aspf={aspf})"
    )
    seen.append(f"DKIM {'aligned' if dkim_ok else 'not checked or missing'} (adkim={adkim})")
    detail = "; ".join(seen)
    if spf_aligned or dkim_ok:
        return ok(name, detail)
    return fail(
        name,
        detail + ": DMARC fails for every digest",
        f"send bounces to an address at {from_domain} (or a subdomain with aspf=r), "
        "or sign with DKIM for the From domain and set DIGESTD_DKIM_SELECTOR",
    )


def mx(lookup: Lookup, domain: str, role: str) -> Check:
    """The domain receives mail (replies to From, bounces to the bounce address)."""
    name = f"mx {domain}"
    records = lookup.mx(domain)
    if not records:
        return fail(
            name,
            f"no MX record: {role} to {domain} cannot be delivered",
            f"publish an MX record for {domain}",
        )
    if all(host in ("", ".") for _, host in records):
        return fail(
            name,
            f"null MX: {domain} accepts no mail, so {role} are lost",
            f"publish a real MX record for {domain}",
        )
    hosts = ", ".join(f"{host} ({pref})" for pref, host in sorted(records))
    return ok(name, hosts)


def check_domains(
    lookup: Lookup,
    from_domain: str,
    bounce_domain: str | None,
    dkim_selector: str | None,
    signing: Callable[[Lookup], tuple[list[Check], bool]] | None = None,
) -> list[Check]:
    """Every DNS check for the From domain and, when different, the bounce domain.
    `signing`: when digestd signs itself, the DKIM checks of its keys (doctor.dkim) and
    whether they pass and align, instead of only looking for the relay's selector."""
    if is_placeholder(from_domain):
        return [
            fail(
                "from domain",
                f"DIGESTD_FROM uses {from_domain}, a placeholder domain",
                "set DIGESTD_FROM to an address at your own domain",
            )
        ]
    envelope = bounce_domain or from_domain
    try:
        checks: list[Check] = []
        spf_check, spf_ok = spf(lookup, from_domain)
        checks.append(spf_check)
        if envelope != from_domain:
            spf_check, spf_ok = spf(lookup, envelope)
            checks.append(spf_check)
        dmarc_check, policy = dmarc(lookup, from_domain)
        checks.append(dmarc_check)
        if signing is None:
            dkim_check, dkim_ok = dkim(lookup, dkim_selector, from_domain)
            checks.append(dkim_check)
        else:
            dkim_checks, dkim_ok = signing(lookup)
            checks += dkim_checks
        checks.append(alignment(from_domain, envelope, policy, spf_ok, dkim_ok))
        checks.append(mx(lookup, from_domain, "replies"))
        if envelope != from_domain:
            checks.append(mx(lookup, envelope, "bounces"))
        return checks
    except DnsUnavailable as exc:
        return [
            fail(
                "dns",
                str(exc),
                "check DIGESTD_DNS_SERVER (or the system's resolver) and run doctor again",
            )
        ]
