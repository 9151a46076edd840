"""A real HTTP server on 127.0.0.1 serving scripted feed responses (threaded http.server).

Each path has a `Reply`: status, body, headers, validators (ETag / Last-Modified, answered
with 304 when the request's conditional headers match), gzip, redirects, a close-delimited
body without Content-Length, or a hold on a threading.Event (a slow server, without sleeping).
Every request is recorded so tests can assert what the client sent.
"""

from __future__ import annotations

import contextlib
import gzip as gzip_lib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HOLD_LIMIT_SECONDS = 10.0  # a held response is released at the latest after this


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/xml; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None
    gzip: bool = False
    redirect_to: str | None = None  # a path on this server (or a full URL)
    send_length: bool = True  # False: no Content-Length, body ends when the connection closes
    hold: threading.Event | None = None  # wait for this before answering


@dataclass
class Request:
    path: str
    headers: dict[str, str]


class FeedServer:
    """Start with `feed_server()`; set replies with `.serve(path, Reply(...))`."""

    def __init__(self) -> None:
        self.replies: dict[str, Reply] = {}
        self.requests: list[Request] = []
        self.not_modified = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._holds: list[threading.Event] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet tests
                return

            def do_GET(self) -> None:
                server._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def serve(self, path: str, reply: Reply) -> str:
        with self._lock:
            self.replies[path] = reply
            if reply.hold is not None:
                self._holds.append(reply.hold)
        return self.url(path)

    def hits(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self._answer(handler)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests.append(Request(handler.path, dict(handler.headers.items())))
            reply = self.replies.get(handler.path)
        if reply is None:
            reply = Reply(status=404, body=b"not found", content_type="text/plain")
        if reply.hold is not None:
            reply.hold.wait(HOLD_LIMIT_SECONDS)
        if reply.redirect_to is not None:
            target = reply.redirect_to
            if target.startswith("/"):
                target = self.base + target
            handler.send_response(302)
            handler.send_header("Location", target)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        matches_etag = reply.etag is not None and handler.headers.get("If-None-Match") == reply.etag
        matches_date = (
            reply.last_modified is not None
            and handler.headers.get("If-Modified-Since") == reply.last_modified
        )
        if matches_etag or matches_date:
            with self._lock:
                self.not_modified += 1
            handler.send_response(304)
            if reply.etag:
                handler.send_header("ETag", reply.etag)
            handler.end_headers()
            return
        body = reply.body
        handler.send_response(reply.status)
        handler.send_header("Content-Type", reply.content_type)
        if reply.gzip:
            body = gzip_lib.compress(body)
            handler.send_header("Content-Encoding", "gzip")
        if reply.etag:
            handler.send_header("ETag", reply.etag)
        if reply.last_modified:
            handler.send_header("Last-Modified", reply.last_modified)
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        if reply.send_length:
            handler.send_header("Content-Length", str(len(body)))
        else:
            handler.send_header("Connection", "close")
            handler.close_connection = True
        handler.end_headers()
        # The client may hang up early (size cap, timeout): that is the point of some tests.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            handler.wfile.write(body)

    def start(self) -> FeedServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            for hold in self._holds:
                hold.set()  # free any handler still waiting
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@contextmanager
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer().start()
    try:
        yield server
    finally:
        server.stop()


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ingest"


def fixture_bytes(rel: str) -> bytes:
    """A copied real-world feed from tests/fixtures/ingest/."""
    return (FIXTURES / rel).read_bytes()


@contextmanager
def ingest_context(db_url: str, clock: Callable[[], datetime], **settings: Any) -> Iterator[Any]:
    """A migrated AppContext for ingestion tests, with small fetch limits by default."""
    from digestd.core.config import Settings
    from digestd.core.context import AppContext

    values: dict[str, Any] = {
        "database_url": db_url,
        "secret_key": "test-secret-key-0123456789",
        "fetch_timeout": 60.0,  # never reached by a local fetch, however loaded the machine
        "fetch_max_bytes": 1024 * 1024,
        "fetch_concurrency": 4,
        "fetch_interval_minutes": 60,
    }
    values.update(settings)
    ctx = AppContext(settings=Settings(**values), clock=clock, actor="test")
    ctx.migrate()
    try:
        yield ctx
    finally:
        ctx.dispose()
