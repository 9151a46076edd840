"""A real DNS server for tests: dnslib on 127.0.0.1 (UDP, a port the OS picks) answering
with the test's records; names it does not know get NXDOMAIN. Never the internet."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from dnslib import MX, QTYPE, RCODE, RR, TXT, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

# (name, type) -> values: TXT values are strings, MX values (preference, host).
Records = dict[tuple[str, str], list]


def txt(name: str, *values: str) -> Records:
    return {(name.lower(), "TXT"): list(values)}


def mx(name: str, *hosts: tuple[int, str]) -> Records:
    return {(name.lower(), "MX"): list(hosts)}


def zone(*parts: Records) -> Records:
    merged: Records = {}
    for part in parts:
        for key, values in part.items():
            merged.setdefault(key, []).extend(values)
    return merged


class _Resolver(BaseResolver):
    def __init__(self) -> None:
        self.records: Records = {}
        self.lock = threading.Lock()
        self.queries: list[tuple[str, str]] = []

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        reply = request.reply()
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        with self.lock:
            self.queries.append((qname, qtype))
            values = self.records.get((qname, qtype), [])
            known = any(name == qname for name, _ in self.records)
        for value in values:
            rdata = TXT(_chunks(value)) if qtype == "TXT" else MX(value[1], value[0])
            reply.add_answer(RR(request.q.qname, request.q.qtype, rdata=rdata, ttl=60))
        if not values and not known:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


def _chunks(value: str) -> list[bytes]:
    """A TXT value as character-strings of at most 255 bytes (long DKIM keys)."""
    data = value.encode()
    return [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]


class DnsTestServer:
    """`set(records)` replaces what it answers; `address` is (ip, port) for the resolver."""

    def __init__(self, records: Records | None = None) -> None:
        self.resolver = _Resolver()
        self.set(records or {})
        quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
        self.server = DNSServer(self.resolver, address="127.0.0.1", port=0, logger=quiet)

    def set(self, records: Records) -> None:
        with self.resolver.lock:
            self.resolver.records = {(n.lower(), t): list(v) for (n, t), v in records.items()}

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server.server_address[:2]
        return str(host), int(port)

    @property
    def queries(self) -> Iterable[tuple[str, str]]:
        with self.resolver.lock:
            return list(self.resolver.queries)

    def start(self) -> DnsTestServer:
        # dnslib's start_thread serves with socketserver's default poll of 0.5 s, which
        # stop() then waits out: half a second at every teardown. 0.05 s: stopped at once.
        serve = self.server.server.serve_forever
        self._thread = threading.Thread(target=serve, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.stop()
        self._thread.join(timeout=5)
        self.server.server.server_close()
