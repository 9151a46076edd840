"""The inbound SMTP listener in a thread of its own (its own asyncio loop), for sync tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from digestd.inbound.smtp_listener import Accepts, Handler, InboundSmtpListener, ListenerLimits


@dataclass
class FakeRecord:
    kind: str
    recorded_id: int | None


@dataclass
class RecordingHandle:
    """A stand-in processing step that records what the listener handed it."""

    calls: list[tuple[bytes, str, list[str], str]] = field(default_factory=list)
    fail: Exception | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(
        self, raw: bytes, mail_from: str, rcpt_to: Sequence[str], source: str
    ) -> FakeRecord:
        if self.fail is not None:
            raise self.fail
        with self.lock:
            self.calls.append((raw, mail_from, list(rcpt_to), source))
            return FakeRecord("bounce", len(self.calls))


def at_domain(domain: str) -> Accepts:
    return lambda address: address.lower().rpartition("@")[2] == domain


class ListenerThread:
    """Runs an InboundSmtpListener on 127.0.0.1, random port, until `stop()`."""

    def __init__(self, listener: InboundSmtpListener) -> None:
        self.listener = listener
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.host = "127.0.0.1"
        self.port = 0

    @classmethod
    def plain(
        cls, handle: Handler, accepts: Accepts, limits: ListenerLimits | None = None
    ) -> ListenerThread:
        return cls(InboundSmtpListener(handle, accepts, limits))

    def start(self) -> ListenerThread:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self.listener.start("127.0.0.1", 0), self.loop)
        self.host, self.port = future.result(timeout=10)
        return self

    def stop(self, grace: float = 5.0) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.listener.stop(grace), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    def open_connections(self) -> int:
        return self.listener.open_connections
