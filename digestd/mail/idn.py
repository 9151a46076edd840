"""Internationalized addresses on the way out (RFC 5890, RFC 6531).

A domain in Unicode (`bücher.example`, as email-validator stores it) is written as its
A-labels (`xn--bcher-kva.example`, IDNA 2008 with UTS #46 mapping, by the `idna` package)
in the envelope and in the headers: every relay can carry that, SMTPUTF8 or not, and it
names the same domain. A non-ASCII local part (`jöran@…`) has no ASCII form: only a relay
that offers SMTPUTF8 can carry it (`smtp_pool` fails the delivery once, clearly, otherwise).
"""

from __future__ import annotations

from email.utils import formataddr, parseaddr

import idna


def ascii_domain(address: str) -> str:
    """`address` with its domain in A-labels; the local part as it is. An address whose
    domain is ASCII already, or that idna cannot encode, is returned unchanged (the relay
    then says what it thinks of it)."""
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    try:
        encoded = idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError:
        return address
    return f"{local}@{encoded}"


def needs_smtputf8(address: str) -> bool:
    """True when the address cannot be written in ASCII, even with its domain in A-labels."""
    return not ascii_domain(address).isascii()


def ascii_mailbox(value: str) -> str:
    """A `Name <address>` header value (or a bare address) with the address's domain in
    A-labels; the display name is left to the email package's encoding."""
    name, address = parseaddr(value)
    if not address or address.rpartition("@")[2].isascii():
        return value
    converted = ascii_domain(address)
    return formataddr((name, converted)) if name else converted
