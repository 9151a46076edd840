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


# Relays whose senders a domain authorizes with one well-known include (the host's
# registrable domain → the include its provider documents). For any other relay the
# record is not second-guessed: only a received message shows whether SPF passes.
RELAY_INCLUDES = {
    "sendgrid.net": "sendgrid.net",
    "mailgun.org": "mailgun.org",
    "amazonaws.com": "amazonses.com",  # email-smtp.REGION.amazonaws.com (SES)
    "postmarkapp.com": "spf.mtasv.net",
    "sparkpostmail.com": "sparkpostmail.com",
    "mailjet.com": "spf.mailjet.com",
    "sendinblue.com": "spf.brevo.com",
    "brevo.com": "spf.brevo.com",
    "mandrillapp.com": "spf.mandrillapp.com",
    "smtp2go.com": "spf.smtp2go.com",
    "gmail.com": "_spf.google.com",
    "google.com": "_spf.google.com",
    "office365.com": "spf.protection.outlook.com",
    "outlook.com": "spf.protection.outlook.com",
}


def relay_include(relay_host: str | None) -> str | None:
    """The include a domain's SPF record needs for this relay, when it is a known one."""
    host = (relay_host or "").strip().rstrip(".").lower()
    if not host or "." not in host or host.replace(".", "").isdigit() or ":" in host:
        return None
    return RELAY_INCLUDES.get(org_domain(host))


@dataclass(frozen=True)
class Spf:
    """A domain's SPF record as the checks read it: usable (one record, not +all) and,
    when it is not, why (the cause alignment names) and the fix that changes the answer."""

    usable: bool
    cause: str = ""
    fix: str = ""


def _with_all(terms: list[str], include: str | None, ending: str) -> str:
    """The record with the relay's include and `ending` (-all): the suggested fix."""
    kept = [t for t in terms[1:] if not t.lstrip("+-~?").startswith("all")]
    if include and f"include:{include}" not in kept:
        kept.append(f"include:{include}")
    return " ".join(["v=spf1", *kept, ending])


def spf(lookup: Lookup, domain: str, relay_host: str | None = None) -> tuple[Check, Spf]:
    """The SPF record of a domain: is there exactly one usable record, does it name the
    relay (a known provider's include), and does it end in -all or ~all."""
    name = f"spf {domain}"
    include = relay_include(relay_host)
    records = [t for t in lookup.txt(domain) if t.lower().startswith("v=spf1")]
    if not records:
        example = f'"v=spf1 include:{include} -all"' if include else '"v=spf1 mx -all"'
        fix = f"publish one TXT record at {domain}: {example}" + (
            "" if include else " (mx, or the servers that send for it, e.g. a:<your relay>)"
        )
        return fail(name, "no SPF record", fix), Spf(False, f"{domain} has no SPF record", fix)
    if len(records) > 1:
        fix = f"merge them into one TXT record at {domain}"
        cause = f"{domain} has {len(records)} SPF records (a permanent error)"
        return fail(
            name, f"{len(records)} SPF records (receivers treat that as an error)", fix
        ), Spf(False, cause, fix)
    record = records[0]
    terms = record.lower().split()
    if "+all" in terms or "all" in terms:
        fix = f'end the record with -all: "{_with_all(terms, include, "-all")}"'
        return fail(name, f"{record!r} lets anyone send as {domain}", fix), Spf(
            False, f"{domain}'s SPF record passes anyone (+all)", fix
        )
    ending = next((t for t in terms if t.lstrip("+-~?") == "all"), None)
    redirect = next((t.partition("=")[2] for t in terms if t.startswith("redirect=")), None)
    named = {t.partition(":")[2] for t in terms if t.startswith(("include:", "+include:"))}
    if include and include not in named and redirect != include:
        fix = f'add include:{include}: "{_with_all(terms, include, ending or "-all")}"'
        if ending == "-all":
            outcome = "fail (-all): receivers may refuse the digests"
        elif ending == "~all":
            outcome = "softfail (~all): digests land in spam or are refused under DMARC"
        else:
            outcome = "neutral: SPF never passes for them"
        return fail(
            name,
            f"{record!r} does not name your relay {relay_host} (include:{include}): its mail "
            f"gets {outcome}",
            fix,
        ), Spf(False, f"{domain}'s SPF record does not include {include}", fix)
    if ending is None and redirect is None:
        fix = f'end the record with -all: "{_with_all(terms, include, "-all")}"'
        return warn(name, f"{record!r} has no 'all' rule", fix), Spf(True)
    if ending == "?all":
        fix = f'end the record with -all: "{_with_all(terms, include, "-all")}"'
        return warn(name, f"{record!r} is neutral (?all)", fix), Spf(True)
    if ending == "~all":
        return ok(name, f"{record} (~all: other senders' mail is marked, not refused)"), Spf(True)
    return ok(name, record), Spf(True)


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
    from_domain: str, envelope_domain: str, policy: Dmarc | None, envelope_spf: Spf, dkim_ok: bool
) -> Check:
    """DMARC passes only if SPF (for the envelope domain) or DKIM aligns with the From
    domain. The domains' alignment (relaxed: same organization; strict: the same name) and
    the envelope's SPF record are told apart, so the cause named is the real one and the
    fix is what would change the answer."""
    name = f"alignment {from_domain}"
    aspf = policy.aspf if policy else "r"
    adkim = policy.adkim if policy else "r"
    if aspf == "s":
        domains_align = envelope_domain == from_domain
    else:
        domains_align = org_domain(envelope_domain) == org_domain(from_domain)
    spf_aligned = domains_align and envelope_spf.usable
    if spf_aligned:
        spf_seen = f"SPF aligned (envelope {envelope_domain}, aspf={aspf})"
    elif domains_align:
        spf_seen = (
            f"SPF cannot pass: {envelope_spf.cause} (the envelope {envelope_domain} aligns"
            f" with {from_domain}, aspf={aspf})"
        )
    else:
        why = (
            "not the same name"
            if aspf == "s" and org_domain(envelope_domain) == org_domain(from_domain)
            else "another organization"
        )
        spf_seen = f"SPF not aligned (envelope {envelope_domain}, aspf={aspf}: {why})"
    dkim_seen = f"DKIM {'aligned' if dkim_ok else 'not checked or missing'} (adkim={adkim})"
    detail = f"{spf_seen}; {dkim_seen}"
    if spf_aligned or dkim_ok:
        return ok(name, detail)
    if domains_align:
        fix = envelope_spf.fix + " (or sign with DKIM for the From domain)"
    elif aspf == "s" and org_domain(envelope_domain) == org_domain(from_domain):
        fix = (
            f"set aspf=r in the DMARC record of {policy.found_at if policy else from_domain},"
            f" or send bounces to an address at exactly {from_domain}"
        )
    else:
        fix = (
            f"send bounces to an address at {from_domain} or one of its subdomains"
            " (DIGESTD_BOUNCE_ADDRESS), or sign with DKIM for the From domain and set"
            " DIGESTD_DKIM_SELECTOR"
        )
    return fail(name, detail + ": DMARC fails for every digest", fix)


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
    relay_host: str | None = None,
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
        # The relay's include matters where receivers check SPF: the envelope's domain.
        spf_check, envelope_spf = spf(
            lookup, from_domain, relay_host if envelope == from_domain else None
        )
        checks.append(spf_check)
        if envelope != from_domain:
            spf_check, envelope_spf = spf(lookup, envelope, relay_host)
            checks.append(spf_check)
        dmarc_check, policy = dmarc(lookup, from_domain)
        checks.append(dmarc_check)
        if signing is None:
            dkim_check, dkim_ok = dkim(lookup, dkim_selector, from_domain)
            checks.append(dkim_check)
        else:
            dkim_checks, dkim_ok = signing(lookup)
            checks += dkim_checks
        checks.append(alignment(from_domain, envelope, policy, envelope_spf, dkim_ok))
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
