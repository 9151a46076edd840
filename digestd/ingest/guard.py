"""Feeds reach public addresses only, unless their source allows private ones.

A feed URL, and every redirect it leads to, could point at this machine or its network:
loopback services, a cloud's metadata endpoint (169.254.169.254), an intranet. So the check
is made where a connection is opened, on the address it is opened to: the host name is
resolved here, every address it resolves to must be public (`core.netaddr.is_public`), and
the connection goes to the address that was checked, never to a second resolution of the
name (DNS rebinding). That covers the first request and each redirect (httpx opens each
through the same transport), IP literals in any spelling (`2130706433`, `0x7f.1`,
`[::ffff:127.0.0.1]`: the resolver reads them as the kernel would) and names that resolve
to private addresses. TLS still verifies the certificate for the host name.

Why a network backend: httpx has no hook between resolving and connecting; httpcore's
connection pool takes a network backend whose `connect_tcp(host, port)` is exactly that
point. httpx's transport does not pass one through, so `GuardedTransport` replaces its pool
with one built the same way plus the backend.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from functools import lru_cache

import httpcore
import httpx

from digestd.core.netaddr import IPAddress, is_public

# (host, port) -> the addresses to try, in order.
Resolver = Callable[[str, int], Awaitable[list[str]]]
# (address, port) -> may we connect there?
Policy = Callable[[IPAddress, int], bool]
REFUSED = "refused:"


class PrivateAddressRefused(httpcore.ConnectError):
    """A connection to a non-public address for a source that does not allow it."""


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for `host` (IP literals as they are)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0]).split("%", 1)[0]  # an IPv6 scope id is not part of it
        if address not in seen:
            seen.append(address)
    return seen


def public_only(address: IPAddress, port: int) -> bool:
    """The default policy: public addresses only (any port)."""
    return is_public(address)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks every address against the policy, and connects to a checked one."""

    def __init__(
        self,
        *,
        allow_private: bool,
        resolve: Resolver = system_resolver,
        policy: Policy = public_only,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.allow_private = allow_private
        self._resolve = resolve
        self._policy = policy
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._resolve(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror or exc}") from None
        if not addresses:
            raise httpcore.ConnectError(f"cannot resolve {host}")
        if not self.allow_private:
            # Every address must pass, not just the first: a mixed answer is a rebinding trick.
            for address in addresses:
                if not self._policy(ipaddress.ip_address(address), port):
                    shown = host if host == address else f"{host} ({address})"
                    raise PrivateAddressRefused(
                        f"{REFUSED} {shown} is not a public address; only a source added"
                        " with --allow-private may reach this machine or a private network"
                    )
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc  # try the next address, as a resolver-driven connect would
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise PrivateAddressRefused(f"{REFUSED} feeds are not read from unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@lru_cache(maxsize=1)
def verifying_context() -> ssl.SSLContext:
    """httpx's default SSL context (certificates and host names verified against its CA
    bundle), made once a process: loading the bundle costs 25-45 ms of CPU a client. Every
    client shares it: each connection only sets the same ALPN protocol on it (HTTP/1.1,
    httpcore's doing), nothing else changes it once made."""
    return httpx.create_ssl_context()


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport (HTTP/1.1, system CAs, pooled) whose connections go through a
    GuardedBackend."""

    def __init__(self, *, limits: httpx.Limits, backend: GuardedBackend) -> None:
        # The process's one SSL context, given to httpx's own pool too, which would
        # otherwise load the CA bundle again for a pool replaced below.
        ssl_context = verifying_context()
        super().__init__(verify=ssl_context, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )
