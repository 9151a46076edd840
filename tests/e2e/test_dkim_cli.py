"""`digestd dkim keygen` and doctor's check of the published key: the key is written with mode
0600 and never printed, the printed record is what doctor then finds matching in the test DNS
server; a missing, stale, revoked or wrong-kind record, and a key file that is not a key, are
each named as the side that is wrong."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from digestd.core.config import Settings
from digestd.doctor import dns
from digestd.doctor.run import _signing
from tests.support.dkim import write_key
from tests.support.dns import DnsTestServer, mx, txt, zone
from tests.support.subscribers import make_invoke

DOMAIN = "papers.example.net"


@pytest.fixture(scope="module")
def dns_server() -> Iterator[DnsTestServer]:
    server = DnsTestServer().start()
    yield server
    server.stop()


def keygen(tmp_path: Path, *args: str) -> dict:
    invoke = make_invoke(f"sqlite:///{tmp_path / 'x.db'}", DIGESTD_FROM=f"D <d@{DOMAIN}>")
    result = invoke("dkim", "keygen", "--out", str(tmp_path / "keys"), *args)
    assert result.exit_code == 0, result.output
    return {"out": result.output, "json": invoke("dkim", "keygen", "--out",
            str(tmp_path / "keys"), "--json", *args)}  # fmt: skip


def dkim_checks(settings: Settings, server: DnsTestServer) -> dict[str, tuple[str, str]]:
    checks, _ = _signing(settings, DOMAIN)(dns.Lookup(server.address))
    return {c.name: (c.status, c.detail) for c in checks}


def test_keygen_writes_private_keys_and_prints_only_the_records(
    tmp_path: Path, dns_server: DnsTestServer
) -> None:
    got = keygen(tmp_path, "--selector", "s2026", "--ed25519")
    out = got["out"]
    rsa_file, ed_file = tmp_path / "keys/s2026.private", tmp_path / "keys/s2026-ed25519.private"
    for path in (rsa_file, ed_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        body = "".join(path.read_text().splitlines()[1:-1])
        assert body[:40] not in out  # the private key is never printed
    assert "PRIVATE" not in out
    assert f"name:  s2026._domainkey.{DOMAIN}" in out
    assert f"name:  s2026-ed25519._domainkey.{DOMAIN}" in out
    assert "value: v=DKIM1; k=rsa; p=MII" in out and "value: v=DKIM1; k=ed25519; p=" in out

    # Run again: the files are kept (not overwritten) and the same records printed.
    second = json.loads(got["json"].stdout)["keys"]
    assert [k["written"] for k in second] == [False, False]
    records = {k["name"]: k["value"] for k in second}
    assert f"value: {records[f's2026._domainkey.{DOMAIN}']}" in out

    # Published as printed: doctor finds both keys matching.
    dns_server.set(
        zone(*(txt(name, value) for name, value in records.items()), mx(DOMAIN, (10, "mx")))
    )
    settings = Settings(
        from_address=f"D <d@{DOMAIN}>",
        dkim_key_file=rsa_file,
        dkim_selector="s2026",
        dkim_ed25519_key_file=ed_file,
    )
    checks = dkim_checks(settings, dns_server)
    assert checks == {
        f"dkim s2026._domainkey.{DOMAIN}": (
            "ok",
            "the published key matches s2026.private (RSA-2048)",
        ),
        f"dkim s2026-ed25519._domainkey.{DOMAIN}": (
            "ok",
            "the published key matches s2026-ed25519.private (Ed25519)",
        ),
    }


def test_doctor_names_the_wrong_side(tmp_path: Path, dns_server: DnsTestServer) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    from digestd.mail.dkim import txt_record

    ours = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = write_key(tmp_path / "s1.private", ours)
    settings = Settings(from_address=f"D <d@{DOMAIN}>", dkim_key_file=path, dkim_selector="s1")
    name = f"dkim s1._domainkey.{DOMAIN}"

    def verdict(*records: str) -> tuple[str, str]:
        dns_server.set(zone(*(txt(f"s1._domainkey.{DOMAIN}", r) for r in records)))
        return dkim_checks(settings, dns_server)[name]

    assert verdict(txt_record(ours))[0] == "ok"
    assert verdict() == (
        "fail",
        f"the DNS record is missing: no key published at s1._domainkey.{DOMAIN}",
    )
    stale = verdict(txt_record(other))
    assert stale[0] == "fail" and "the DNS record and the key file do not match" in stale[1]
    assert verdict("v=DKIM1; k=rsa; p=") == (
        "fail",
        "the DNS record is wrong: it is revoked (empty p=)",
    )
    wrong_kind = verdict(txt_record(ed25519.Ed25519PrivateKey.generate()))
    assert wrong_kind == (
        "fail",
        "the DNS record is wrong: it has k=ed25519 where the key file holds an RSA-2048 key",
    )
    assert verdict("v=DKIM1; k=rsa; p=bm90IGEga2V5")[1] == (
        "the DNS record is wrong: it has a p= that is not a valid public key"
    )

    path.write_text("not a key\n")
    status, detail = verdict(txt_record(ours))
    assert status == "fail" and detail.startswith("the key file is wrong: ")


def test_a_signing_domain_that_does_not_align_fails(
    tmp_path: Path, dns_server: DnsTestServer
) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from digestd.mail.dkim import txt_record

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = write_key(tmp_path / "s1.private", key)
    dns_server.set(zone(txt("s1._domainkey.other.example.com", txt_record(key))))
    settings = Settings(
        from_address=f"D <d@{DOMAIN}>",
        dkim_key_file=path,
        dkim_selector="s1",
        dkim_domain="other.example.com",
    )
    checks, passed = _signing(settings, DOMAIN)(dns.Lookup(dns_server.address))
    assert [c.status for c in checks] == ["ok", "fail"] and not passed
