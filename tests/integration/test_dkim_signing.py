"""DKIM signing end to end: digests sent by `send_due` to a real SMTP server, a confirmation
mail (`SmtpPool.send`) and a command reply (`send_bytes`), each checked as it arrived by two
independent verifiers (dkimpy and OpenDKIM) with the keys published in the test DNS server;
a body changed by one byte fails both, and h= covers the one-click unsubscribe headers."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.delivery.planning import plan_due
from digestd.delivery.sending import send_due
from digestd.mail.dkim_offload import OffloadSigner
from digestd.mail.mime import compose
from digestd.mail.smtp_pool import SmtpPool
from tests.support.digests import add_subscriber, load_seed_entries
from tests.support.dkim import OpenDkim, dkimpy_results, record, write_key
from tests.support.dns import DnsTestServer, txt, zone
from tests.support.smtp import SmtpTestServer

NOW = datetime(2026, 11, 26, 8, 30, tzinfo=UTC)
DOMAIN = "example.net"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("dkim")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    # The TXT values go in files: a Path of the value itself would fold a "//" of its base64
    # into "/" (a key published wrong, about one run in ten).
    (folder / "s1.txt").write_text(record(rsa_key))
    (folder / "s1-ed25519.txt").write_text(record(ed_key))
    return {
        "rsa": write_key(folder / "s1.private", rsa_key),
        "ed": write_key(folder / "s1-ed25519.private", ed_key),
        "rsa_record": folder / "s1.txt",
        "ed_record": folder / "s1-ed25519.txt",
    }


@pytest.fixture(scope="module")
def dns_server(keys: dict[str, Path]) -> Iterator[DnsTestServer]:
    server = DnsTestServer(
        zone(
            txt(f"s1._domainkey.{DOMAIN}", keys["rsa_record"].read_text()),
            txt(f"s1-ed25519._domainkey.{DOMAIN}", keys["ed_record"].read_text()),
        )
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def opendkim(tmp_path_factory: pytest.TempPathFactory, dns_server: DnsTestServer) -> OpenDkim:
    return OpenDkim.start(tmp_path_factory.mktemp("opendkim"), dns_server)


def signing(app: AppContext, smtp: SmtpTestServer, keys: dict[str, Path], ed: bool) -> None:
    app.settings = replace(
        app.settings,
        smtp_port=smtp.port,
        base_url="https://digest.example.net",
        from_address=f"Paper Digest <digest@{DOMAIN}>",
        bounce_address=f"bounces@{DOMAIN}",
        dkim_key_file=keys["rsa"],
        dkim_selector="s1",
        dkim_ed25519_key_file=keys["ed"] if ed else None,
    )


def tags(message: bytes, selector: str) -> dict[str, str]:
    head = message.split(b"\r\n\r\n")[0].decode()
    for field in re.split(r"\r\n(?=\S)", head):
        name, _, value = field.partition(":")
        if name.lower() == "dkim-signature":
            found = dict(
                (k.strip(), re.sub(r"\s+", "", v))
                for k, _, v in (t.partition("=") for t in value.split(";"))
            )
            if found.get("s") == selector:
                return found
    raise AssertionError(f"no signature with s={selector}")


@pytest.mark.parametrize("ed", [False, True], ids=["rsa", "rsa+ed25519"])
@pytest.mark.parametrize("child", [True, False], ids=["signing-process", "signed-here"])
async def test_signed_digests_verify_with_dkimpy_and_opendkim(
    app: AppContext,
    clock,
    smtp_server: SmtpTestServer,
    keys: dict[str, Path],
    dns_server: DnsTestServer,
    opendkim: OpenDkim,
    ed: bool,
    child: bool,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock.set(NOW)
    signing(app, smtp_server, keys, ed)
    # Every signature from the signing process (mail.dkim_offload), or none: it never starts.
    monkeypatch.setattr(OffloadSigner, "always_offload", True)
    if not child:
        monkeypatch.setattr(OffloadSigner, "_start", _does_not_start)
    caplog.set_level(logging.INFO, "digestd.mail.dkim_offload")
    with session_scope(app.engine) as s:
        load_seed_entries(s, NOW - timedelta(hours=2))
        add_subscriber(s, "ada@example.org", NOW - timedelta(days=3), name="Ada  Lovelace")
        add_subscriber(s, "raj@example.org", NOW - timedelta(days=3), format="text")
    assert plan_due(app).planned == 2
    report = await send_due(app, worker_id="test")
    assert report.sent == 2
    done = f"DKIM: {2 if child else 0} messages signed by the signing process in"
    assert any(r.getMessage().startswith(done) for r in caplog.records)
    selectors = ["s1", "s1-ed25519"] if ed else ["s1"]
    for received in smtp_server.messages:
        data = received.data
        assert dkimpy_results(data, dns_server) == [True] * len(selectors)
        assert opendkim.results(data) == dict.fromkeys(selectors, "pass")
        # The one-click headers are signed (and over-signed: one added later breaks it).
        signed = tags(data, "s1")["h"].split(":")
        for header in ("from", "to", "subject", "date", "message-id", "list-id"):
            assert header in signed
        assert signed.count("list-unsubscribe") == 2
        assert signed.count("list-unsubscribe-post") == 2
        assert tags(data, "s1")["a"] == "rsa-sha256"
        assert tags(data, "s1")["d"] == DOMAIN
        if ed:
            assert tags(data, "s1-ed25519")["a"] == "ed25519-sha256"

        # One byte of the body changed: both verifiers say no, for every signature.
        head, _, body = data.partition(b"\r\n\r\n")
        at = len(body) // 2
        while not body[at : at + 1].isalnum():
            at += 1
        changed = head + b"\r\n\r\n" + body[:at] + bytes([body[at] ^ 1]) + body[at + 1 :]
        assert dkimpy_results(changed, dns_server) == [False] * len(selectors)
        assert set(opendkim.results(changed).values()) == {"fail"}
        # A List-Unsubscribe added in transit breaks it too.
        added = b"List-Unsubscribe: <https://evil.example/>\r\n" + data
        assert dkimpy_results(added, dns_server) == [False] * len(selectors)


async def _does_not_start(self: OffloadSigner) -> None:
    self.gone = True


async def test_confirmation_mails_and_command_replies_are_signed(
    smtp_server: SmtpTestServer,
    keys: dict[str, Path],
    dns_server: DnsTestServer,
    opendkim: OpenDkim,
) -> None:
    settings = Settings(
        database_url="sqlite://",
        smtp_port=smtp_server.port,
        from_address=f"Paper Digest <digest@{DOMAIN}>",
        dkim_key_file=keys["rsa"],
        dkim_selector="s1",
        dkim_ed25519_key_file=keys["ed"],
    )
    confirmation = compose(
        sender=settings.from_address,
        to="Zoë <zoe@example.org>",
        subject="Confirm your subscription",
        text="Confirm:  https://digest.example.net/confirm/abc\n\n\n",
        html="<p>Confirm:   <a href='https://digest.example.net/confirm/abc'>here</a></p>",
    )
    reply = EmailMessage()
    reply["From"] = settings.from_address
    reply["To"] = "ada@example.org"
    reply["Subject"] = "Re: help"
    reply.set_content("Commands:\n  subscribe\n  unsubscribe\n.\n")
    async with SmtpPool(settings) as pool:
        await pool.send(confirmation, sender=f"bounces@{DOMAIN}")
        await pool.send_bytes("", "ada@example.org", reply.as_bytes())  # LF line ends
    for received in smtp_server.messages:
        assert dkimpy_results(received.data, dns_server) == [True, True]
        assert opendkim.results(received.data) == {"s1": "pass", "s1-ed25519": "pass"}


def test_signing_is_off_without_a_key_file(smtp_server: SmtpTestServer) -> None:
    assert SmtpPool(Settings(database_url="sqlite://", dkim_selector="s1")).signer is None
