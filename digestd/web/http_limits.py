"""uvicorn's HTTP/1.1 protocol (h11) with a deadline for receiving each request.

Why a subclass: uvicorn has no header timeout. Its keep-alive timer only runs between
requests (not on a new connection at all) and is cancelled by the first byte received, so
a client that opens a connection and sends nothing, or trickles a header line now and
then (slowloris), holds the connection for ever; ASGI middleware cannot help, as it runs
only once the headers are in. uvicorn's own answer is "run behind a proxy" (its issue
#157 was closed without one); we do that too (README), and bound the server anyway.

The deadline starts when a connection opens, and again when a response is complete (the
next request on a kept-alive connection); the request line and headers must be in before
it. Once they are, it is armed once more for the body (bodies are small here: 64 KiB at
most), and cancelled when the request is complete. When it fires the connection is closed
without an answer, as Go's ReadHeaderTimeout and nginx's client_header_timeout do.
Trickling does not extend it: it is a deadline, not an idle timer.

The connection cap (uvicorn's `limit_concurrency`, DIGESTD_WEB_MAX_CONNECTIONS) counts every
open connection, and uvicorn answers 503 to any request while the count is at the cap: so
slow connections alone, re-opened every deadline, kept every real request out (issue 23,
re-probed: 1,000 slow-header connections, every request 503 for their 10 s). So a new
connection at the cap first closes the connection that has waited longest for its request
(a slow one, or an idle kept-alive one: both are closed without an answer, which HTTP lets
a server do), as the oldest-first eviction of a slowloris filter does. A real client sends
its request as soon as it connects, so it is not the one that waited longest; only when
every connection has a request in progress is the new one's request answered 503.

h11 (pure Python) is used on purpose rather than httptools: it is what uvicorn picks when
httptools is not installed (ours), its state machine tells when the headers are complete,
and its `max_incomplete_event_size` (16 KiB by default) caps the request line and headers.
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)


class DeadlineH11Protocol(H11Protocol):
    """H11Protocol whose every request must arrive within `request_deadline` seconds."""

    request_deadline: float = 10.0  # set per server by `deadline_protocol`

    _deadline: asyncio.TimerHandle | None = None
    _waiting_for_body = False
    _waiting_since = 0.0  # when the request now awaited began to be awaited

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(body=False)
        if self.limit_concurrency is not None and len(self.connections) >= self.limit_concurrency:
            self._make_room()

    def _make_room(self) -> None:
        """Close the connection that has waited longest for its request's headers."""
        waiting = [
            other
            for other in self.connections
            if isinstance(other, DeadlineH11Protocol)
            and other is not self
            and other._awaiting_headers()
        ]
        if not waiting:
            return  # every other connection has a request in progress: uvicorn answers 503
        oldest = min(waiting, key=lambda other: other._waiting_since)
        log.debug("closed the longest-waiting connection: %d open", len(self.connections))
        oldest._disarm()
        # Out of the count now (uvicorn's connection_lost would do it on the next turn).
        self.connections.discard(oldest)
        oldest.transport.close()

    def _awaiting_headers(self) -> bool:
        return (
            self._deadline is not None
            and not self._waiting_for_body
            and self.conn.their_state is h11.IDLE
            and not self.transport.is_closing()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow_request()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            # A kept-alive connection: the next request gets a fresh deadline (uvicorn's
            # keep-alive timer, usually shorter, still closes it if nothing comes at all).
            self._arm(body=False)
            self._follow_request()  # a pipelined request may already be complete

    def _follow_request(self) -> None:
        """Move the deadline along h11's view of the client's side of the exchange."""
        if self._deadline is None:
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            return  # still waiting for the request line and headers
        if state is h11.SEND_BODY:
            if not self._waiting_for_body:
                self._arm(body=True)  # headers are in: the same time again for the body
            return
        self._disarm()  # the request is complete (or the connection is done with)

    def _arm(self, *, body: bool) -> None:
        self._disarm()
        self._waiting_for_body = body
        self._waiting_since = self.loop.time()
        self._deadline = self.loop.call_later(self.request_deadline, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._waiting_for_body = False

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        # debug: under a slowloris attack this fires for every connection.
        what = "body" if self._waiting_for_body else "headers"
        log.debug("closed a connection: no complete request %s in %gs", what, self.request_deadline)
        self.transport.close()


def deadline_protocol(request_deadline: float) -> type[DeadlineH11Protocol]:
    """A DeadlineH11Protocol class for one server (uvicorn instantiates the class itself)."""
    return type(
        "DeadlineH11Protocol", (DeadlineH11Protocol,), {"request_deadline": request_deadline}
    )
