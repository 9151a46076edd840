"""The listener's SMTP on the wire, spoken by hand (raw sockets on 127.0.0.1): what no
client library sends. Smuggled end markers stay data, over-long lines are refused, the idle
timeout counts silence (a message still arriving is not cut, however long it takes; a
trickle is), plaintext sent behind STARTTLS is dropped, and a peer that keeps erring is
shown the door. The few timing tests use short timeouts set for them (fractions of a
second, a few seconds in all); the processing is the recording stand-in."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from digestd.core.config import Settings
from digestd.inbound.smtp_listener import InboundSmtpListener, ListenerLimits, _tls_context
from tests.support.daemon import wait_until
from tests.support.listener import ListenerThread, RecordingHandle, at_domain
from tests.support.smtp_hostile import RawSmtp
from tests.support.tls import self_signed_cert

DOMAIN = "bounce.example.org"
RCPT = f"bounces@{DOMAIN}"


@pytest.fixture
def handle() -> RecordingHandle:
    return RecordingHandle()


def serve(handle: RecordingHandle, **limits: float) -> Iterator[ListenerThread]:
    server = ListenerThread.plain(handle, at_domain(DOMAIN), ListenerLimits(**limits)).start()  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def listener(handle: RecordingHandle) -> Iterator[ListenerThread]:
    yield from serve(handle, max_bytes=64 * 1024, timeout=30)


def raw(server: ListenerThread) -> RawSmtp:
    return RawSmtp(server.host, server.port, timeout=10)


@pytest.mark.parametrize("marker", [b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\n", b"\r\n.\r"])
def test_a_smuggled_second_message_stays_inside_the_first(
    listener: ListenerThread, handle: RecordingHandle, marker: bytes
) -> None:
    smuggled = (
        b"MAIL FROM:<ceo@victim.example>\r\nRCPT TO:<" + RCPT.encode() + b">\r\nDATA\r\n"
        b"Subject: forged\r\n\r\nforged\r\n"
    )
    with raw(listener) as conn:
        conn.open_data(RCPT)
        conn.sock.sendall(b"Subject: first\r\n\r\nbody" + marker + smuggled + b".\r\n")
        reply = conn.reply()
        assert reply.startswith(b"250 2.0.0 Recorded as bounce #1"), reply
        assert conn.command(b"QUIT").startswith(b"221")
    [(message, _, _, _)] = handle.calls  # one message, the forged one inside it
    assert smuggled in message


def test_an_over_long_command_line_is_refused_and_the_connection_closed(
    listener: ListenerThread,
) -> None:
    with raw(listener) as conn:
        assert conn.line().startswith(b"220 ")
        conn.sock.sendall(b"EHLO " + b"a" * 5000)  # no line end yet: refused all the same
        assert conn.line().startswith(b"500 5.5.2 Line too long")
        assert conn.closed()
    with raw(listener) as conn:  # a command line of RFC 5321's 512 octets is fine
        assert conn.line().startswith(b"220 ")
        assert conn.command(b"EHLO " + b"a" * 505).startswith(b"250-")


def test_a_data_line_over_the_bound_refuses_that_message_only(
    listener: ListenerThread, handle: RecordingHandle
) -> None:
    with raw(listener) as conn:
        conn.open_data(RCPT)
        conn.sock.sendall(b"Subject: x\r\n\r\n" + b"y" * 10_000 + b"\r\n.\r\n")
        assert conn.reply().startswith(b"500 5.5.2 Line too long")
        # The session goes on: a message with the longest real bounce line is taken.
        assert conn.command(b"MAIL FROM:<>").startswith(b"250")
        assert conn.command(f"RCPT TO:<{RCPT}>".encode()).startswith(b"250")
        assert conn.command(b"DATA").startswith(b"354")
        reply = conn.command(b"Subject: y\r\n\r\n" + b"z" * 1240 + b"\r\n.")
        assert reply.startswith(b"250 "), reply
    assert len(handle.calls) == 1


def test_a_message_that_keeps_arriving_is_not_cut_by_the_idle_timeout_nor_the_session_cap(
    handle: RecordingHandle,
) -> None:
    """Idle timeout 0.5 s, session cap 1 s: a body sent in pieces every 0.15 s for 1.5 s
    is silent for less than the timeout at any moment, and earns its time by its data."""
    for server in serve(handle, timeout=0.5, session_timeouts=2):
        with raw(server) as conn:
            conn.open_data(RCPT)
            conn.sock.sendall(b"Subject: slow\r\n\r\n")
            for _ in range(10):
                time.sleep(0.15)  # the pace of a slow sender is what is tested (1.5 s)
                conn.sock.sendall(b"x" * 2000 + b"\r\n")
            conn.sock.sendall(b".\r\n")
            reply = conn.reply()
            assert reply.startswith(b"250 2.0.0 Recorded"), reply
    assert len(handle.calls) == 1


def test_a_trickle_is_cut_at_the_session_cap_and_silence_at_the_idle_timeout(
    handle: RecordingHandle,
) -> None:
    for server in serve(handle, timeout=0.5, session_timeouts=2):
        with raw(server) as conn:
            conn.open_data(RCPT)
            started = time.monotonic()
            # One byte each 0.15 s (never silent, hardly sending) until the listener answers.
            while not select.select([conn.sock], [], [], 0.15)[0]:
                assert time.monotonic() - started < 10, "never cut"
                conn.sock.sendall(b"x")
            reply = conn.line()
            assert reply.startswith(b"421 4.4.2 Session too long"), reply
            assert 0.9 < time.monotonic() - started < 5
        with raw(server) as conn:  # silent inside DATA: the idle timeout
            conn.open_data(RCPT)
            conn.sock.sendall(b"Subject: x\r\n")
            assert conn.line().startswith(b"421 4.4.2 Idle")
            assert conn.closed()
    assert handle.calls == []


def test_plaintext_sent_behind_starttls_is_dropped(handle: RecordingHandle, tmp_path: Path) -> None:
    """RFC 3207 4.2 (the STARTTLS command injection): commands pipelined in the clear after
    STARTTLS must not be answered inside the TLS session."""
    cert = self_signed_cert(tmp_path / "tls")
    context = _tls_context(Settings(inbound_tls_cert=cert.cert, inbound_tls_key=cert.key))
    listener = InboundSmtpListener(handle, at_domain(DOMAIN), tls_context=context)
    server = ListenerThread(listener).start()
    try:
        with raw(server) as conn:
            assert conn.line().startswith(b"220 ")
            assert b"STARTTLS" in conn.command(b"EHLO mx.example.net")
            conn.sock.sendall(b"STARTTLS\r\nMAIL FROM:<injected@evil.example>\r\n")
            assert conn.line().startswith(b"220 2.0.0")
            client = cert.client_context()
            tls = client.wrap_socket(conn.sock, server_hostname="127.0.0.1")
            tls.sendall(b"EHLO mx.example.net\r\n")
            first = tls.recv(4096)
            assert first.startswith(b"250-"), first  # not an answer to the injected MAIL
            assert b"STARTTLS" not in first
            tls.sendall(b"RCPT TO:<" + RCPT.encode() + b">\r\n")
            assert tls.recv(4096).startswith(b"503 5.5.1 Need MAIL"), "the MAIL was executed"
            tls.close()
    finally:
        server.stop()


def test_a_failed_tls_handshake_frees_its_connection_slot(
    handle: RecordingHandle, tmp_path: Path
) -> None:
    cert = self_signed_cert(tmp_path / "tls")
    context = _tls_context(Settings(inbound_tls_cert=cert.cert, inbound_tls_key=cert.key))
    limits = ListenerLimits(max_connections=2, timeout=5)
    server = ListenerThread(
        InboundSmtpListener(handle, at_domain(DOMAIN), limits, tls_context=context)
    ).start()
    try:
        for ending in (b"not a TLS hello at all\r\n" * 10, b""):  # b"": gone before its hello
            for _ in range(3):  # more than the cap: each slot must come back
                with raw(server) as conn:
                    assert conn.line().startswith(b"220 ")
                    conn.command(b"EHLO mx.example.net")
                    assert conn.command(b"STARTTLS").startswith(b"220 2.0.0")
                    if ending:  # not a TLS hello: refused at once
                        conn.sock.sendall(ending)
                        assert conn.closed()
                wait_until(lambda: server.open_connections() == 0, 10, "the slot freed")
    finally:
        server.stop()


def test_a_peer_that_keeps_erring_is_closed(listener: ListenerThread) -> None:
    with raw(listener) as conn:
        assert conn.line().startswith(b"220 ")
        replies = [conn.command(b"BOGUS") for _ in range(20)]
        assert all(r.startswith(b"500 5.5.1") for r in replies[:-1])
        assert conn.line().startswith(b"421 4.7.0 Too many errors")
        assert conn.closed()


def test_a_half_closed_peer_still_gets_its_answers(listener: ListenerThread) -> None:
    with raw(listener) as conn:
        assert conn.line().startswith(b"220 ")
        conn.sock.sendall(b"EHLO mx.example.net\r\nNOOP\r\nQUIT\r\n")
        conn.sock.shutdown(socket.SHUT_WR)
        assert conn.reply().startswith(b"250-")
        assert conn.reply().startswith(b"250 2.0.0")
        assert conn.reply().startswith(b"221 2.0.0")
        assert conn.closed()


def test_tls_is_refused_where_it_is_not_configured(listener: ListenerThread) -> None:
    with raw(listener) as conn:
        assert conn.line().startswith(b"220 ")
        assert b"STARTTLS" not in conn.command(b"EHLO mx.example.net")
        assert conn.command(b"STARTTLS").startswith(b"502")
        assert conn.command(b"NOOP").startswith(b"250")
