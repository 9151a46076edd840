"""Digest messages as bytes on the wire: every required header, both parts, and nothing a
feed or a profile contains can add or split a header."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy

from digestd.mail.mime import build_digest_message

MAILTO = "mailto:bounces+u1-abcdefghijklmnop@bounce.example.net?subject=unsubscribe"


def wire(**overrides):
    args = {
        "sender": "Paper Digest <digest@example.net>",
        "to_email": "ada@example.org",
        "to_name": "Ada",
        "subject": "Your papers for 26 Nov 2026: 5 papers",
        "text": "Hello\nUnsubscribe: https://example.net/unsubscribe/TOKEN",
        "html": "<p>Hello — ünïcødé</p>",
        "message_id": "<digest.2026-11-26.1.abc@example.net>",
        "unsubscribe_url": "https://example.net/unsubscribe/TOKEN",
        "when": datetime(2026, 11, 26, 7, tzinfo=UTC),
    }
    args.update(overrides)
    raw = build_digest_message(**args).as_bytes()
    return raw, message_from_bytes(raw, policy=policy.default)


def test_every_required_header_and_both_parts() -> None:
    _, msg = wire()
    assert msg["From"] == "Paper Digest <digest@example.net>"
    assert msg["To"] == "Ada <ada@example.org>"
    assert msg["Subject"] == "Your papers for 26 Nov 2026: 5 papers"
    assert msg["Date"].datetime == datetime(2026, 11, 26, 7, tzinfo=UTC)
    assert msg["Message-ID"] == "<digest.2026-11-26.1.abc@example.net>"
    assert msg["List-Id"] == "Research paper digest <digest.example.net>"
    # No DIGESTD_BOUNCE_ADDRESS: only the https link, never a mailto: nobody reads.
    assert msg["List-Unsubscribe"] == "<https://example.net/unsubscribe/TOKEN>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg.get_content_type() == "multipart/alternative"
    assert msg.get_body(("plain",)).get_content().startswith("Hello")
    assert "ünïcødé" in msg.get_body(("html",)).get_content()


def test_text_format_is_a_single_plain_part() -> None:
    _, msg = wire(html=None)
    assert msg.get_content_type() == "text/plain" and not msg.is_multipart()


def test_line_breaks_in_values_cannot_inject_headers() -> None:
    raw, msg = wire(
        subject="Great paper\r\nBcc: victim@example.org\nX-Evil: 1",
        to_name="Mallory\r\nCc: other@example.org",
        unsubscribe_url="https://example.net/unsubscribe/T\r\nX-Evil: 2",
    )
    assert msg["Bcc"] is None and msg["Cc"] is None and msg["X-Evil"] is None
    assert "victim@example.org" in msg["Subject"]  # kept as text, on one logical line
    assert b"\nBcc:" not in raw and b"\nX-Evil:" not in raw
    assert [a.addr_spec for a in msg["To"].addresses] == ["ada@example.org"]


def test_list_unsubscribe_stays_plain_on_the_wire_with_a_real_length_url() -> None:
    # A real signed link makes the header longer than 78 characters; the email package
    # would then RFC 2047-encode the URL (=?utf-8?q?=3Chttps...), which mail providers
    # do not decode, so their unsubscribe button (RFC 8058) would not appear.
    from aiosmtplib.email import flatten_message

    url = "https://digest.example.org/unsubscribe/WzEsMV0.awiqlQ.eFvK_s9_7INN5cMEB8An5d1ZZ-c"
    args = {
        "sender": "Paper Digest <digest@example.net>",
        "to_email": "ada@example.org",
        "subject": "Your papers digest — Thu 26 Nov 2026 · 5 papers",
        "text": "Hello",
        "html": "<p>Hello</p>",
        "message_id": "<digest.2026-11-26.1.abc@example.net>",
        "unsubscribe_url": url,
        "when": datetime(2026, 11, 26, 7, tzinfo=UTC),
        "mailto": MAILTO,
    }
    msg = build_digest_message(**args)
    # Folded only between the two entries, as RFC 2369 allows; each URL stays whole.
    expected = (f"List-Unsubscribe: <{url}>,\r\n <{MAILTO}>\r\n").encode()
    for raw in (flatten_message(msg), msg.as_bytes(policy=policy.SMTP)):  # what aiosmtplib sends
        assert expected in raw
        assert b"=?utf-8?q?=3Chttp" not in raw
        parsed = message_from_bytes(raw, policy=policy.default)
        https, mailto = [u.strip(" <>") for u in parsed["List-Unsubscribe"].split(",")]
        assert (https, mailto) == (url, MAILTO)
        assert parsed["Subject"] == args["subject"]
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
