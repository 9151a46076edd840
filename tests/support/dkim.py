"""DKIM for tests: keys written to files, their records in the test DNS server, and the two
independent verifiers the signing tests ask: dkimpy (`verify`, looking keys up in that DNS
server) and OpenDKIM (Debian's milter in its test mode, `opendkim -t FILE`, resolving
through libunbound pointed at that DNS server). Never the internet."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import dkim
import dns.resolver
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from digestd.mail.dkim import txt_record
from tests.conftest import skip_or_fail
from tests.support.dns import DnsTestServer

OPENDKIM = "/usr/sbin/opendkim"


def write_key(path: Path, key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> Path:
    """The key as an unencrypted PKCS#8 PEM file (mode 0600)."""
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


def record(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> str:
    return txt_record(key)


def dnsfunc(server: DnsTestServer):  # type: ignore[no-untyped-def]
    """dkimpy's key lookup, asking the test DNS server."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [server.address[0]]
    resolver.port = server.address[1]
    resolver.lifetime = 5

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        try:
            answer = resolver.resolve(name.decode("ascii"), "TXT", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return b""
        return b"".join(b"".join(r.strings) for r in answer)  # type: ignore[attr-defined]

    return lookup


def dkimpy_results(message: bytes, server: DnsTestServer) -> list[bool]:
    """Whether each DKIM-Signature of `message` verifies (dkimpy), top to bottom."""
    checker = dkim.DKIM(message)
    count = sum(1 for line in message.split(b"\r\n\r\n")[0].splitlines()
                if line.lower().startswith(b"dkim-signature:"))  # fmt: skip
    results = []
    for i in range(count):
        try:
            results.append(bool(checker.verify(i, dnsfunc=dnsfunc(server))))
        except dkim.DKIMException:
            results.append(False)
    return results


@dataclass
class OpenDkim:
    """`opendkim -t` with a configuration whose resolver asks only the test DNS server."""

    conf: Path
    workdir: Path

    @classmethod
    def start(cls, workdir: Path, server: DnsTestServer) -> OpenDkim:
        if not Path(OPENDKIM).is_file() or shutil.which("opendkim-testmsg") is None:
            skip_or_fail("OpenDKIM is not installed (apt-get install opendkim opendkim-tools)")
        host, port = server.address
        unbound = workdir / "unbound.conf"
        unbound.write_text(
            "server:\n  do-not-query-localhost: no\n  verbosity: 0\n"
            f'forward-zone:\n  name: "."\n  forward-addr: {host}@{port}\n'
        )
        conf = workdir / "opendkim.conf"
        conf.write_text(
            f"Mode v\nResolverConfiguration {unbound}\nSyslog no\nAlwaysAddARHeader yes\n"
        )
        return cls(conf, workdir)

    def results(self, message: bytes) -> dict[str, str]:
        """selector -> `pass` / `fail` / …, as OpenDKIM's Authentication-Results says."""
        path = self.workdir / "message.eml"
        path.write_bytes(message)
        done = subprocess.run(
            [OPENDKIM, "-x", str(self.conf), "-t", str(path), "-vvv"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        # One result a line: `dkim=pass (2048-bit key; unprotected) header.d=… header.s=s1 …`.
        found = re.findall(r"(?m)^\s*dkim=(\w+).*?header\.s=([\w.-]+)", done.stdout)
        return {selector: verdict for verdict, selector in found}
