"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, random port, with scriptable faults."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# A fault hook sees (recipient, message count so far) and returns an SMTP reply
# string to refuse with ("451 4.3.0 try later"), "DROP" to close the connection,
# or None to accept.
FaultHook = Callable[[str, int], str | None]


@dataclass
class Received:
    envelope_from: str
    recipients: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]

    @property
    def message_id(self) -> str | None:
        """The Message-ID header, as `message["Message-ID"]` gives it, from the headers alone
        (a digest's parts are most of its bytes: about 1 ms against 5 for the whole message,
        for tests that count hundreds of messages)."""
        found: str | None = BytesHeaderParser(policy=policy.default).parsebytes(self.data)[
            "Message-ID"
        ]
        return found


@dataclass
class RecordingHandler:
    messages: list[Received] = field(default_factory=list)
    fault: FaultHook | None = None
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list
    ) -> str:
        if self.fault is not None:
            reply = self.fault(address, len(self.messages))
            if reply == "DROP":
                assert server.transport is not None
                server.transport.close()
                return "421 4.4.2 connection dropped"
            if reply:
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.messages.append(
                Received(
                    envelope_from=str(envelope.mail_from),
                    recipients=list(envelope.rcpt_tos),
                    data=bytes(envelope.original_content or envelope.content or b""),
                )
            )
        return "250 2.0.0 queued"


@dataclass
class AdvertisingHandler(RecordingHandler):
    """A RecordingHandler whose EHLO reply also offers `advertise` (e.g. PIPELINING, which
    aiosmtpd handles, reading commands in order, but does not announce)."""

    advertise: tuple[str, ...] = ()

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list
    ) -> list[str]:
        session.host_name = hostname  # what aiosmtpd does itself when no hook is set
        return [*responses[:-1], *(f"250-{word}" for word in self.advertise), responses[-1]]


class SmtpTestServer:
    """Starts aiosmtpd in its own thread; `messages` are what arrived.

    `advertise` adds EHLO keywords; `auth` (user, password) makes it require AUTH (over
    plain text: loopback only, for tests); `smtputf8` offers SMTPUTF8 (RFC 6531), which
    aiosmtpd leaves off by default, as many relays do."""

    def __init__(
        self,
        *,
        advertise: tuple[str, ...] = (),
        auth: tuple[str, str] | None = None,
        smtputf8: bool = False,
    ) -> None:
        self.handler = AdvertisingHandler(advertise=advertise) if advertise else RecordingHandler()
        self.port = free_port()
        handler = self.handler
        extra: dict = {}
        if auth is not None:
            user, password = auth[0].encode(), auth[1].encode()

            def check(server, session, envelope, mechanism, data) -> AuthResult:  # type: ignore[no-untyped-def]
                ok = data.login == user and data.password == password
                return AuthResult(success=ok, handled=False)

            extra = {"authenticator": check, "auth_required": True, "auth_require_tls": False}
        if smtputf8:
            extra["enable_SMTPUTF8"] = True

        class _Controller(Controller):
            def factory(self) -> SMTP:
                with handler.lock:
                    handler.connections += 1
                return SMTP(
                    self.handler, hostname="localhost", data_size_limit=10 * 1024 * 1024, **extra
                )

        self.controller = _Controller(self.handler, hostname="127.0.0.1", port=self.port)

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def messages(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.messages)

    @property
    def connections(self) -> int:
        return self.handler.connections

    def set_fault(self, hook: FaultHook | None) -> None:
        self.handler.fault = hook

    def start(self) -> SmtpTestServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


class HeldServer:
    """The test SMTP server, stopped in its tracks once it has accepted `count` messages: it
    answers no one until `resume()`, so that senders are caught mid-send (by a signal, or
    while other daemons claim their share), however slow or busy the machine (the hook runs
    in the server's loop, which it holds)."""

    def __init__(self, server: SmtpTestServer, count: int) -> None:
        self.reached = threading.Event()
        self._resume = threading.Event()

        def hook(_rcpt: str, accepted: int) -> None:
            if accepted >= count and not self._resume.is_set():
                self.reached.set()
                self._resume.wait(timeout=120)  # bounded: the test resumes right after
            return None

        self.server = server
        server.set_fault(hook)

    def resume(self) -> None:
        self._resume.set()
        self.server.set_fault(None)
