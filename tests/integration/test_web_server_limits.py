"""The real web server under a slowloris attack: slow-header connections are closed at the
header deadline (trickling does not extend it), and a normal request still answers, even
while more slow connections than the cap are open."""

from __future__ import annotations

import contextlib
import selectors
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from digestd.core.config import Settings
from digestd.core.context import AppContext
from tests.conftest import FakeClock
from tests.support.smtp import SmtpTestServer
from tests.support.web import running_web

SLOW_CONNECTIONS = 300
HEADER_TIMEOUT = 0.5
GIVE_UP_AFTER = 30.0  # a bound for the loop, not a measured time: without the fix, never


def _open_slow(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # headers never finished
    sock.setblocking(False)
    return sock


def _wait_until_closed(
    socks: list[socket.socket],
    trickle: list[socket.socket],
    give_up: float = GIVE_UP_AFTER,
    open_at_most: int = 0,
) -> int:
    """Read until no more than `open_at_most` sockets are open (each closed one has seen EOF)
    or `give_up` seconds pass, sending a header line on the `trickle` ones now and then as
    slowloris does; returns how many are still open. A closed socket stays closed, so
    stopping early gives the same answer to "at most `open_at_most` open?" as waiting
    `give_up` seconds would."""
    selector = selectors.DefaultSelector()
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
    open_ = set(socks)
    deadline = time.monotonic() + give_up
    next_trickle = time.monotonic()
    while len(open_) > open_at_most and time.monotonic() < deadline:
        if time.monotonic() >= next_trickle:
            for sock in trickle:
                if sock in open_:
                    with contextlib.suppress(OSError):
                        sock.send(b"X-a: b\r\n")
            next_trickle = time.monotonic() + HEADER_TIMEOUT / 5
        for key, _ in selector.select(timeout=0.05):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                selector.unregister(sock)
                open_.discard(sock)
    selector.close()
    return len(open_)


@pytest.fixture
def bounded(sqlite_url: str, clock: FakeClock) -> Iterator[AppContext]:
    """A context whose web server has a short header deadline (the database is irrelevant)."""
    settings = Settings(
        database_url=sqlite_url,
        secret_key="test-secret-key-0123456789",
        web_header_timeout=HEADER_TIMEOUT,
        web_keepalive_timeout=1,
        web_max_connections=100,
    )
    ctx = AppContext(settings=settings, clock=clock)
    ctx.migrate()
    yield ctx
    ctx.dispose()


def test_slow_header_connections_are_closed_and_the_site_still_answers(
    bounded: AppContext, smtp_server: SmtpTestServer
) -> None:
    with running_web(bounded, smtp_server) as web:
        port = int(web.base_url.rsplit(":", 1)[1])
        socks = [_open_slow(port) for _ in range(SLOW_CONNECTIONS)]
        try:
            # During the attack a request is answered, not left hanging behind the slow
            # connections nor refused for them (the longest-waiting one makes room).
            during = httpx.get(f"{web.base_url}/healthz", timeout=10)
            assert during.status_code == 200
            still_open = _wait_until_closed(socks, trickle=socks[:20])
        finally:
            for sock in socks:
                sock.close()
        assert still_open == 0, f"{still_open} slow connections still open"
        after = httpx.get(f"{web.base_url}/healthz", timeout=10)
        assert after.status_code == 200


def test_a_silent_connection_is_closed_too(
    bounded: AppContext, smtp_server: SmtpTestServer
) -> None:
    with running_web(bounded, smtp_server) as web:
        port = int(web.base_url.rsplit(":", 1)[1])
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.setblocking(False)
        try:
            assert _wait_until_closed([sock], trickle=[]) == 0
        finally:
            sock.close()


def test_a_request_is_served_while_slow_connections_fill_the_cap(
    sqlite_url: str, clock: FakeClock, smtp_server: SmtpTestServer
) -> None:
    """Issue 23 re-probed: 1,000 slow-header connections, each closed only at the header
    deadline, left every request answered 503 until then, so an attacker re-opening 200
    connections every 10 s kept the site down. A new connection at the cap now closes the
    one that has waited longest for its request; a real request gets its answer."""
    settings = Settings(
        database_url=sqlite_url,
        secret_key="test-secret-key-0123456789",
        web_header_timeout=120,  # never reached here: only the cap can close them
        web_max_connections=50,
    )
    ctx = AppContext(settings=settings, clock=clock)
    ctx.migrate()
    try:
        with running_web(ctx, smtp_server) as web:
            port = int(web.base_url.rsplit(":", 1)[1])
            socks = [_open_slow(port) for _ in range(150)]
            try:
                answers = [httpx.get(f"{web.base_url}/healthz", timeout=10) for _ in range(3)]
                still_open = _wait_until_closed(socks, trickle=[], give_up=2.0, open_at_most=49)
            finally:
                for sock in socks:
                    sock.close()
    finally:
        ctx.dispose()
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert still_open < 50, f"{still_open} slow connections open with a cap of 50"
