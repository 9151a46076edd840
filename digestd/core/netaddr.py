"""Network addresses: who counts as one client, and which addresses are on the internet.

Used by the web's rate limits and the mail-command reply caps (`client_key`) and by feed
fetching, which may reach only public addresses unless a source allows private ones
(`is_public`).
"""

from __future__ import annotations

import ipaddress

IPV6_PREFIX = 64

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def client_key(host: str) -> str:
    """What one client is counted as: an IPv4 address, or the /64 network of an IPv6 one
    (one line or host is routinely given a whole /64, so counting single addresses would
    let it take a new one for each request); an IPv4-mapped IPv6 address is its IPv4
    address; anything that is not an address, as it is."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (IPv4-mapped, IPv4-compatible, 6to4, NAT64
    well-known prefix), which is where a connection to it really goes; else None."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    packed = address.packed
    if packed[:12] == bytes(12) and int(address) > 1:  # ::a.b.c.d (deprecated, still routed)
        return ipaddress.IPv4Address(packed[12:])
    if address in ipaddress.IPv6Network("64:ff9b::/96"):
        return ipaddress.IPv4Address(packed[12:])
    return None


def is_public(address: IPAddress) -> bool:
    """True for an address on the public internet: not loopback, private (RFC 1918, ULA),
    link-local (cloud metadata at 169.254.169.254), shared (CGNAT), multicast, reserved or
    unspecified, also when wrapped in an IPv6 address."""
    inner = embedded_ipv4(address)
    if inner is not None:
        return is_public(inner)
    return address.is_global and not address.is_multicast
