"""Reading a message once, in bounded work (issue 23, finding 3).

Time is measured by benchmarks/bench_inbound.py (`--dsn-blocks`), not here: these tests
check the shape of the work (each part decoded once, recipients capped, bytes parsed
bounded), which is what keeps it linear and bounded.
"""

from __future__ import annotations

import pytest

from digestd.inbound import message as message_module
from digestd.inbound.classify import classify
from digestd.inbound.message import Mail
from digestd.inbound.parse import MAX_PARSED, parse
from digestd.inbound.reading import MAX_RECIPIENTS


def big_dsn(blocks: int, *, listed: bool = True) -> bytes:
    """A DSN of `blocks` failed recipients, none with its own Diagnostic-Code (each reads
    the report's text), the text part listing every address as Sendmail's does."""
    text = "".join(f"<user{i}@example.net>: user unknown\r\n" for i in range(blocks))
    report = "\r\n".join(
        f"Final-Recipient: rfc822; user{i}@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        for i in range(blocks)
    )
    return (
        "From: MAILER-DAEMON@mx.example.net\r\nTo: bounces@bounce.example.org\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n"
        "--B\r\nContent-Type: text/plain\r\n\r\nCould not be delivered to:\r\n"
        f"{text if listed else ''}\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; mx.example.net\r\n\r\n{report}\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        "Message-ID: <digest.2026-11-26.1.abcdef012345@example.org>\r\n"
        "To: user0@example.net\r\n\r\n--B--\r\n"
    ).encode()


def test_each_text_part_is_decoded_once_whatever_the_number_of_recipients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decoded: list[int] = []
    real = message_module._decoded_text

    def counting(part: object) -> str:
        decoded.append(id(part))
        return real(part)  # type: ignore[arg-type]

    monkeypatch.setattr(message_module, "_decoded_text", counting)
    reading = classify(parse(big_dsn(2000), 10**8), mail_from="", person_mail=False)
    assert reading.kind == "bounce" and len(reading.recipients) == MAX_RECIPIENTS
    assert len(decoded) == len(set(decoded)) <= 3  # before: once per recipient, and more


def test_recipients_past_the_cap_are_counted_not_read() -> None:
    reading = classify(parse(big_dsn(150), 10**8), mail_from="", person_mail=False)
    assert [r.address for r in reading.recipients] == [
        f"user{i}@example.net" for i in range(MAX_RECIPIENTS)
    ]
    assert reading.more_recipients == 50
    assert all(r.failure.hard for r in reading.recipients)
    # 40,000 blocks: read in the first MAX_PARSED bytes, the cap holds, the rest counted.
    huge = classify(parse(big_dsn(40_000, listed=False), 10**8), mail_from="", person_mail=False)
    assert huge.more_recipients > 0 and len(huge.recipients) == MAX_RECIPIENTS


def test_the_returned_message_id_is_found_past_many_blocks() -> None:
    mail = Mail(parse(big_dsn(3000, listed=False), 10**8))
    assert mail.returned.message_id == "<digest.2026-11-26.1.abcdef012345@example.org>"
    assert len(mail.parts) == 4  # the report is one part, not 3,000


def test_only_the_first_bytes_of_a_long_message_are_parsed() -> None:
    raw = big_dsn(60_000, listed=False)
    assert len(raw) > 4 * MAX_PARSED
    parsed = parse(raw, 10**8)
    assert parsed.unread == len(raw) - MAX_PARSED and parsed.size == len(raw)
    reading = classify(parsed, mail_from="", person_mail=False)
    assert reading.kind == "bounce" and len(reading.recipients) == MAX_RECIPIENTS


def test_a_message_of_countless_parts_is_not_given_to_flufl() -> None:
    """flufl.bounce walks every part in each detector (50,000 empty parts: 43 s)."""
    parts = b"--B\r\n\r\nx\r\n" * 5000
    raw = (
        b"From: MAILER-DAEMON@example.net\r\nSubject: Undelivered\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n" + parts + b"--B--\r\n"
    )
    mail = Mail(parse(raw, 10**8))
    assert mail.too_many_parts and mail.flufl == (frozenset(), frozenset())
