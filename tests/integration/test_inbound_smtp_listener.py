"""The inbound SMTP listener against a real SMTP client (smtplib) on 127.0.0.1: it takes
mail for the bounce domain only, refuses relaying and oversize mail, caps connections and
idle time, answers 451 (never 250, never 5xx) when a message could not be recorded, and
tells open sessions to come back later when it stops.

The processing here is a stand-in that records its calls; tests/integration/
test_inbound_smtp_records.py runs the real processing into a real database."""

from __future__ import annotations

import smtplib
import socket
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from digestd.inbound import smtp_server
from digestd.inbound.smtp_listener import ListenerLimits
from tests.support.daemon import wait_until
from tests.support.listener import FakeRecord, ListenerThread, RecordingHandle, at_domain
from tests.support.tls import self_signed_cert

DOMAIN = "bounce.example.org"
MESSAGE = (
    b"From: MAILER-DAEMON@mx.example.net\r\n"
    b"To: bounces+abc@bounce.example.org\r\n"
    b"Subject: Undelivered Mail Returned to Sender\r\n"
    b"\r\n"
    b"\xe9 8-bit body line kept as it came\r\n"
    b".leading dot line\r\n"
)


@pytest.fixture
def handle() -> RecordingHandle:
    return RecordingHandle()


def _listener(handle: RecordingHandle, **limits: float) -> Iterator[ListenerThread]:
    server = ListenerThread.plain(handle, at_domain(DOMAIN), ListenerLimits(**limits)).start()  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def listener(handle: RecordingHandle) -> Iterator[ListenerThread]:
    yield from _listener(handle, max_bytes=64 * 1024, max_connections=3, timeout=30)


def _client(server: ListenerThread) -> smtplib.SMTP:
    client = smtplib.SMTP(server.host, server.port, timeout=10)
    client.ehlo("mx.example.net")
    return client


def test_a_message_for_the_bounce_domain_is_recorded_and_answered_250(
    listener: ListenerThread, handle: RecordingHandle
) -> None:
    with _client(listener) as client:
        client.mail("")  # the null reverse-path every bounce comes from
        client.rcpt(f"bounces+abc@{DOMAIN}")
        code, reply = client.data(MESSAGE)
    assert code == 250, reply
    assert b"Recorded as bounce #1" in reply
    [(raw, mail_from, rcpt_to, source)] = handle.calls
    assert raw.replace(b"\r\n", b"\n") == MESSAGE.replace(b"\r\n", b"\n")  # bytes as sent
    assert mail_from == ""
    assert rcpt_to == [f"bounces+abc@{DOMAIN}"]
    assert source.startswith("smtp:127.0.0.1:")


def test_relaying_is_refused_at_rcpt_and_nothing_is_recorded(
    listener: ListenerThread, handle: RecordingHandle
) -> None:
    with _client(listener) as client:
        client.mail("spammer@example.com")
        code, reply = client.rcpt("victim@example.com")
        assert code == 550 and b"Relaying denied" in reply, reply
        for outsider in (
            f"someone@sub.{DOMAIN}",
            f"bounces@{DOMAIN}@example.com",
            f'"bounces@{DOMAIN}"@example.com',
            f"<@{DOMAIN}:victim@example.com>",  # an old source route through us
        ):
            code, reply = client.rcpt(outsider)
            assert 500 <= code < 600, (outsider, reply)
        client.rset()
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail("spammer@example.com", ["victim@example.com"], MESSAGE)
    assert handle.calls == []


def test_one_of_ours_among_outsiders_gets_only_ours(
    listener: ListenerThread, handle: RecordingHandle
) -> None:
    with _client(listener) as client:
        refused = client.sendmail("", ["victim@example.com", f"unsubscribe+t@{DOMAIN}"], MESSAGE)
    assert refused["victim@example.com"][0] == 550
    [(_, _, rcpt_to, _)] = handle.calls
    assert rcpt_to == [f"unsubscribe+t@{DOMAIN}"]


def test_oversize_mail_is_refused_by_size_and_by_data(
    listener: ListenerThread, handle: RecordingHandle
) -> None:
    big = MESSAGE + b"x" * 100 + b"\r\n" * 1 + (b"y" * 998 + b"\r\n") * 80  # ≈ 80 kB > 64 kB
    with _client(listener) as client:
        assert client.has_extn("size") and int(client.esmtp_features["size"]) == 64 * 1024
        code, reply = client.mail("", options=[f"SIZE={len(big)}"])
        assert code == 552, reply
        client.rset()
        # A client that does not announce the size is cut off at the limit in DATA, and
        # the connection closed: the rest of the message is not read.
        client.mail("")
        client.rcpt(f"bounces@{DOMAIN}")
        code, reply = client.data(big)
        assert code == 552, reply
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
    with _client(listener) as client:  # the next connection is served as usual
        assert client.sendmail("", [f"bounces@{DOMAIN}"], MESSAGE) == {}
    assert len(handle.calls) == 1


def test_a_message_that_cannot_be_recorded_gets_451_not_250_nor_5xx(
    listener: ListenerThread, handle: RecordingHandle
) -> None:
    handle.fail = RuntimeError("database is down")
    with _client(listener) as client:
        client.mail("")
        client.rcpt(f"bounces@{DOMAIN}")
        code, reply = client.data(MESSAGE)
    assert code == 451, reply  # temporary: the MTA keeps the message and tries again


def test_connections_over_the_cap_are_told_to_come_back(
    listener: ListenerThread, handle: RecordingHandle
) -> None:
    clients = [_client(listener) for _ in range(3)]
    try:
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            smtplib.SMTP(listener.host, listener.port, timeout=10)
        assert refused.value.smtp_code == 421
        clients.pop().quit()
        # A slot is free again once the listener has seen that session end.
        wait_until(lambda: listener.open_connections() <= 2, 10, "a session to end")
        assert _client(listener).sendmail("", [f"bounces@{DOMAIN}"], MESSAGE) == {}
    finally:
        for client in clients:
            client.close()


def test_an_idle_session_is_closed_with_421(handle: RecordingHandle) -> None:
    for server in _listener(handle, timeout=0.3):
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            stream = sock.makefile("rb")
            assert stream.readline().startswith(b"220 ")
            # Say nothing: the listener must give up on us (the 10 s socket timeout bounds
            # this test; the listener's own is 0.3 s).
            assert stream.readline().startswith(b"421 4.4.2")
            assert stream.readline() == b""  # closed


def test_stop_tells_an_open_session_to_come_back_later(handle: RecordingHandle) -> None:
    server = ListenerThread.plain(handle, at_domain(DOMAIN)).start()
    client = _client(server)
    try:
        server.stop()
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
            client.noop()
    finally:
        client.close()
    with pytest.raises(OSError):
        socket.create_connection((server.host, server.port), timeout=2).close()


def test_a_message_being_recorded_at_stop_still_gets_its_250(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The idle client below never reads its 421, so the listener drops it only when the
    # linger after the 421 ends (2 s): a tenth of that here. What is tested is the order
    # (the idle session gone while the message is still being recorded), not the linger.
    monkeypatch.setattr(smtp_server, "LINGER", 0.2)
    started, release = threading.Event(), threading.Event()

    def slow(raw: bytes, mail_from: str, rcpt_to: Sequence[str], source: str) -> FakeRecord:
        started.set()
        assert release.wait(timeout=30)
        return FakeRecord("bounce", 7)

    server = ListenerThread.plain(slow, at_domain(DOMAIN)).start()
    idle = _client(server)
    answer: list[tuple[int, bytes]] = []
    client = _client(server)
    client.mail("")
    client.rcpt(f"bounces@{DOMAIN}")
    sending = threading.Thread(target=lambda: answer.append(client.data(MESSAGE)))
    sending.start()
    try:
        assert started.wait(timeout=10)
        stopping = threading.Thread(target=server.stop, kwargs={"grace": 20})
        stopping.start()
        # The idle session is told to come back later while the message is still recording.
        wait_until(lambda: server.open_connections() == 1, 10, "the idle session closed")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            idle.noop()
            idle.noop()
        release.set()
        sending.join(timeout=30)
        stopping.join(timeout=30)
        assert answer == [(250, b"2.0.0 Recorded as bounce #7")]
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
            client.noop()
    finally:
        release.set()
        client.close()
        idle.close()


def test_starttls_is_offered_with_a_certificate_and_plain_mail_still_accepted(
    handle: RecordingHandle, tmp_path: Path
) -> None:
    from digestd.core.config import Settings
    from digestd.inbound.smtp_listener import InboundSmtpListener, _tls_context

    cert = self_signed_cert(tmp_path / "tls")
    context = _tls_context(Settings(inbound_tls_cert=cert.cert, inbound_tls_key=cert.key))
    server = ListenerThread(
        InboundSmtpListener(handle, at_domain(DOMAIN), tls_context=context)
    ).start()
    try:
        with smtplib.SMTP(server.host, server.port, timeout=10) as client:
            client.ehlo("mx.example.net")
            assert client.has_extn("starttls")
            client.starttls(context=cert.client_context())
            client.ehlo("mx.example.net")
            assert client.sendmail("", [f"bounces@{DOMAIN}"], MESSAGE) == {}
            # Relaying stays refused inside TLS too.
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                client.sendmail("", ["victim@example.com"], MESSAGE)
        with _client(server) as plain:  # a sender without TLS is not turned away
            assert plain.sendmail("", [f"bounces@{DOMAIN}"], MESSAGE) == {}
    finally:
        server.stop()
    assert len(handle.calls) == 2


def test_a_bad_certificate_is_one_line(tmp_path: Path) -> None:
    from digestd.core.config import Settings
    from digestd.inbound.smtp_listener import ListenerError, _tls_context

    cert = self_signed_cert(tmp_path / "tls")
    broken = tmp_path / "broken.pem"
    broken.write_text("not a key")
    with pytest.raises(ListenerError, match="cannot load DIGESTD_INBOUND_TLS_CERT/KEY"):
        _tls_context(Settings(inbound_tls_cert=cert.cert, inbound_tls_key=broken))
