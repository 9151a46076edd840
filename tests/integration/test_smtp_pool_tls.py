"""SmtpPool against real aiosmtpd servers: STARTTLS with AUTH, implicit TLS, plain;
a certificate we do not trust is refused; connections are reused, never one per message."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult

from digestd.core.config import Settings
from digestd.mail.mime import build_digest_message
from digestd.mail.smtp_pool import SmtpPool, TemporarySendError
from tests.support.smtp import RecordingHandler, free_port
from tests.support.tls import SelfSignedCert as Cert
from tests.support.tls import self_signed_cert

USER, PASSWORD = "mailer", "s3cret-pass"
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    """A self-signed certificate for 127.0.0.1, made here (no files shipped)."""
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


def start_server(mode: str, cert: Cert) -> tuple[Controller, RecordingHandler, int]:
    handler = RecordingHandler()
    port = free_port()
    tls = cert.server_context()

    class _Controller(Controller):
        def factory(self) -> SMTP:
            with handler.lock:
                handler.connections += 1
            return SMTP(
                self.handler,
                hostname="localhost",
                tls_context=tls if mode == "starttls" else None,
                require_starttls=mode == "starttls",
                authenticator=authenticator,
                auth_required=True,
                # aiosmtpd only knows about TLS it started itself (STARTTLS); under
                # implicit TLS the whole connection is encrypted already.
                auth_require_tls=mode == "starttls",
            )

    controller = _Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        ssl_context=tls if mode == "tls" else None,
    )
    controller.start()
    return controller, handler, port


@pytest.fixture(params=["starttls", "tls"])
def secure_server(
    request: pytest.FixtureRequest, cert: Cert
) -> Iterator[tuple[str, RecordingHandler, int]]:
    controller, handler, port = start_server(request.param, cert)
    yield request.param, handler, port
    controller.stop()


def message(i: int):
    return build_digest_message(
        sender="digestd <digest@example.net>",
        to_email=f"r{i}@example.org",
        subject=f"Digest {i}",
        text="hello",
        html="<p>hello</p>",
        message_id=f"<m{i}@example.net>",
        unsubscribe_url="https://example.net/unsubscribe/t",
        when=dt.datetime(2026, 11, 26, tzinfo=dt.UTC),
    )


async def test_tls_modes_with_auth_deliver_over_reused_connections(
    secure_server: tuple[str, RecordingHandler, int], cert: Cert
) -> None:
    mode, handler, port = secure_server
    settings = Settings(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_tls=mode,
        smtp_username=USER,
        smtp_password=PASSWORD,
        smtp_max_connections=2,
        smtp_timeout=10,
    )
    before = handler.connections
    async with SmtpPool(settings, tls_context=cert.client_context()) as pool:
        await asyncio.gather(*(pool.send(message(i)) for i in range(10)))
    assert sorted(m.recipients[0] for m in handler.messages) == sorted(
        f"r{i}@example.org" for i in range(10)
    )
    assert handler.connections - before <= 2
    assert handler.messages[0].message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_wrong_password_is_refused(
    secure_server: tuple[str, RecordingHandler, int], cert: Cert
) -> None:
    mode, handler, port = secure_server
    settings = Settings(
        smtp_port=port, smtp_tls=mode, smtp_username=USER, smtp_password="wrong-password"
    )
    async with SmtpPool(settings, tls_context=cert.client_context()) as pool:
        # A login problem delays deliveries (temporary), it never fails them.
        with pytest.raises(TemporarySendError) as caught:
            await pool.send(message(0))
    assert "535" in caught.value.reply
    assert handler.messages == []


async def test_an_untrusted_certificate_is_not_accepted(cert: Cert) -> None:
    controller, handler, port = start_server("tls", cert)
    try:
        settings = Settings(smtp_port=port, smtp_tls="tls", smtp_timeout=5)
        async with SmtpPool(settings) as pool:  # system trust store: our cert is unknown
            with pytest.raises(TemporarySendError):
                await pool.send(message(0))
        assert handler.messages == []
    finally:
        controller.stop()
