"""SmtpPool.send_bytes against a real aiosmtpd: what arrives is the message as given (lines
starting with "." come back single, bare line ends become CRLF), the envelope is as given
(the null sender included), an unusual address still goes through aiosmtplib's own
handling, a refused recipient or message leaves the connection ready for the next, and a
reply that never comes ends the message after the timeout (each step has its own) and the
connection with it."""

from __future__ import annotations

import asyncio
import threading

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from digestd.core.config import Settings
from digestd.mail.mime import SlotPart, build_digest_template
from digestd.mail.smtp_pool import PermanentSendError, SmtpPool, TemporarySendError
from tests.support.smtp import RecordingHandler, SmtpTestServer, free_port


@pytest.fixture
def pool_settings(smtp_server: SmtpTestServer) -> Settings:
    return Settings(database_url="sqlite://", smtp_port=smtp_server.port, smtp_max_connections=1)


MESSAGE = (
    b"From: a@example.org\r\nTo: b@example.org\r\nSubject: dots\r\n\r\n"
    b".a line that starts with a dot\r\n.\r\n..two\r\nmiddle . dot\r\n"
)


async def test_dots_and_line_ends_arrive_as_written(
    pool_settings: Settings, smtp_server: SmtpTestServer
) -> None:
    opened = smtp_server.connections  # aiosmtpd's controller connects once to check it runs
    async with SmtpPool(pool_settings) as pool:
        reply = await pool.send_bytes("bounce+x@example.org", "b@example.org", MESSAGE)
        await pool.send_bytes("", "c@example.org", MESSAGE.replace(b"\r\n", b"\n") + b"tail")
    assert "queued" in reply
    first, second = smtp_server.messages
    assert (first.envelope_from, first.recipients) == ("bounce+x@example.org", ["b@example.org"])
    assert first.data == MESSAGE
    assert (second.envelope_from, second.recipients) == ("<>", ["c@example.org"])
    assert second.data == MESSAGE + b"tail\r\n"
    assert smtp_server.connections == opened + 1


async def test_a_quoted_local_part_goes_through_aiosmtplib(
    pool_settings: Settings, smtp_server: SmtpTestServer
) -> None:
    async with SmtpPool(pool_settings) as pool:
        await pool.send_bytes("a@example.org", '"odd name"@example.org', MESSAGE)
    (received,) = smtp_server.messages
    assert received.recipients == ['"odd name"@example.org']
    assert received.data == MESSAGE


async def test_a_refused_recipient_leaves_the_connection_usable(
    pool_settings: Settings, smtp_server: SmtpTestServer
) -> None:
    replies = {"gone@example.org": "550 5.1.1 no such user", "later@example.org": "451 4.3.0 busy"}
    smtp_server.set_fault(lambda rcpt, _n: replies.get(rcpt))
    opened = smtp_server.connections
    async with SmtpPool(pool_settings) as pool:
        with pytest.raises(PermanentSendError) as hard:
            await pool.send_bytes("a@example.org", "gone@example.org", MESSAGE)
        await pool.send_bytes("a@example.org", "fine@example.org", MESSAGE)
        assert smtp_server.connections == opened + 1  # the same connection, reset
        with pytest.raises(TemporarySendError) as soft:
            await pool.send_bytes("a@example.org", "later@example.org", MESSAGE)
        await pool.send_bytes("a@example.org", "fine2@example.org", MESSAGE)
    assert (hard.value.code, hard.value.reply) == (550, "5.1.1 no such user")
    assert soft.value.code == 451
    assert [m.recipients for m in smtp_server.messages] == [
        ["fine@example.org"],
        ["fine2@example.org"],
    ]


async def test_a_digest_template_with_dotted_lines_arrives_whole(
    pool_settings: Settings, smtp_server: SmtpTestServer
) -> None:
    text = ".NET, a line that starts with a dot\n.\n..and two\nslot: "
    template = build_digest_template(
        sender="digest@example.org",
        subject="dots",
        parts=[SlotPart("plain", [text, "email", "\n.after the slot\n"])],
    )
    wire = template.fill(
        to_email="b@example.org",
        to_name="",
        message_id="<m.1@example.org>",
        unsubscribe_url="https://example.org/u",
        date="Thu, 26 Nov 2026 08:00:00 +0000",
        values={"plain": {"email": ".b@example.org"}},
    )
    assert wire is not None and b"\r\n..NET" in wire  # stuffed once, when built
    async with SmtpPool(pool_settings) as pool:
        await pool.send_wire("digest@example.org", "b@example.org", wire)
    (received,) = smtp_server.messages
    body = received.message.get_content().replace("\r\n", "\n")
    assert body == (
        ".NET, a line that starts with a dot\n.\n..and two\nslot: .b@example.org\n.after the slot\n"
    )


class RefusingData(RecordingHandler):
    """Refuses the message itself (the reply after the data) for one recipient."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if envelope.rcpt_tos == ["big@example.org"]:
            return "552 5.3.4 message too big"
        return await super().handle_DATA(server, session, envelope)


async def test_a_refusal_after_the_data_is_permanent_and_the_connection_goes_on() -> None:
    handler = RefusingData()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings = Settings(database_url="sqlite://", smtp_port=port, smtp_max_connections=1)
        async with SmtpPool(settings) as pool:
            with pytest.raises(PermanentSendError) as refused:
                await pool.send_bytes("a@example.org", "big@example.org", MESSAGE)
            await pool.send_bytes("a@example.org", "fine@example.org", MESSAGE)
    finally:
        controller.stop()
    assert (refused.value.code, refused.value.reply) == (552, "5.3.4 message too big")
    assert [m.recipients for m in handler.messages] == [["fine@example.org"]]


class Stalling(RecordingHandler):
    """Never answers one step (MAIL, RCPT or the data) for the sender `stall@example.org`
    while the test runs; answers everyone else."""

    def __init__(self, step: str) -> None:
        super().__init__()
        self.step = step
        self.released = threading.Event()

    async def _stall(self, step: str) -> None:
        if step == self.step:  # until the test ends (a thread waits, the server's loop runs)
            await asyncio.get_running_loop().run_in_executor(None, self.released.wait)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address == "stall@example.org":
            await self._stall("mail")
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if envelope.mail_from == "stall@example.org":
            await self._stall("rcpt")
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if envelope.mail_from == "stall@example.org":
            await self._stall("data")
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.parametrize("step", ["mail", "rcpt", "data"])
async def test_a_reply_that_never_comes_times_out_and_the_next_message_gets_a_new_connection(
    step: str,
) -> None:
    handler = Stalling(step)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings = Settings(
            database_url="sqlite://", smtp_port=port, smtp_max_connections=1, smtp_timeout=0.3
        )
        async with SmtpPool(settings) as pool:
            await pool.send_bytes("a@example.org", "first@example.org", MESSAGE)
            with pytest.raises(TemporarySendError) as timed_out:
                await asyncio.wait_for(
                    pool.send_bytes("stall@example.org", "b@example.org", MESSAGE), 10
                )
            await pool.send_bytes("a@example.org", "next@example.org", MESSAGE)
    finally:
        handler.released.set()
        controller.stop()
    assert timed_out.value.code is None
    assert "Timed out waiting for server response" in timed_out.value.reply
    assert [m.recipients for m in handler.messages] == [
        ["first@example.org"],
        ["next@example.org"],
    ]
