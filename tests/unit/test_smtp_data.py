"""DATA as the listener reads it (digestd.inbound.smtp_data), fed in every possible split:
only <CRLF>.<CRLF> ends a message (the SMTP smuggling variants are data), transparency dots
are removed, a line without end or a message past the limit is cut while it arrives, and
the stream never keeps more than one unfinished line."""

from __future__ import annotations

import pytest

from digestd.inbound.smtp_data import DATA_LINE_MAX, SPOOL_IN_MEMORY, DataStream, Fed, Spool
from digestd.inbound.smtp_syntax import parse_path


def feed(chunks: list[bytes], max_bytes: int = 1_000_000) -> tuple[Fed, bytes, bytes]:
    """Feed `chunks` as reads; (where it stands, the spooled message, what is left)."""
    spool = Spool()
    stream = DataStream(spool, max_bytes)
    buf = bytearray()
    fed = Fed.MORE
    for chunk in chunks:
        buf += chunk
        fed, _ = stream.feed(buf)
        assert len(buf) <= DATA_LINE_MAX + 1 or fed is not Fed.MORE
        if fed is not Fed.MORE:
            break
    message = spool.take() if fed is Fed.DONE else b""
    return fed, message, bytes(buf)


def splits(data: bytes) -> list[list[bytes]]:
    """`data` whole, byte by byte, and cut in two at every position."""
    return [[data], [data[i : i + 1] for i in range(len(data))]] + [
        [data[:i], data[i:]] for i in range(1, len(data))
    ]


def test_a_message_ends_at_crlf_dot_crlf_and_loses_its_transparency_dots() -> None:
    wire = b"Subject: x\r\n\r\n..leading dot\r\n.\r\nNEXT COMMAND\r\n"
    for chunks in splits(wire):
        fed, message, rest = feed(chunks)
        assert fed is Fed.DONE, chunks
        assert message == b"Subject: x\r\n\r\n.leading dot\r\n"
        assert b"NEXT COMMAND\r\n".startswith(rest), chunks  # what follows stays unread


@pytest.mark.parametrize(
    "smuggled",
    [
        b"\n.\n",
        b"\n.\r\n",
        b"\r.\r\n",
        b"\r\n.\n",
        b"\r\n.\r",
        b"\r\n.\r\r\n",
        b"\r\n\x00.\r\n",
    ],
)
def test_smtp_smuggling_end_markers_are_data(smuggled: bytes) -> None:
    """A second message hidden behind a bare LF or CR end marker stays inside the first."""
    inner = b"MAIL FROM:<x@evil.example>\r\nRCPT TO:<bounces@b.example>\r\nDATA\r\n"
    wire = b"Subject: first\r\n\r\nbody" + smuggled + inner + b"forged\r\n.\r\n"
    for chunks in splits(wire):
        fed, message, rest = feed(chunks)
        assert fed is Fed.DONE and rest == b"", (smuggled, chunks)
        assert inner in message  # the smuggled commands are data of the one message


def test_bare_lf_lines_count_as_lines_not_as_one_long_line() -> None:
    wire = (b"x" * 900 + b"\n") * 50 + b"\r\n.\r\n"
    fed, message, _ = feed([wire])
    assert fed is Fed.DONE and len(message) == 901 * 50 + 2


def test_a_line_over_the_bound_refuses_the_message_at_its_end() -> None:
    long_line = b"y" * (DATA_LINE_MAX + 10) + b"\r\n"
    for chunks in ([long_line + b".\r\n"], [long_line[:5000], long_line[5000:], b".\r\n"]):
        fed, _, rest = feed([b"Subject: x\r\n\r\n", *chunks, b"after"])
        assert fed is Fed.TOO_LONG and rest == b"", chunks
    fed, message, _ = feed([b"y" * (DATA_LINE_MAX - 2) + b"\r\n.\r\n"])  # at the bound: fine
    assert fed is Fed.DONE and len(message) == DATA_LINE_MAX


def test_a_line_without_end_is_dropped_as_it_comes_and_cut_at_the_size_limit() -> None:
    spool = Spool()
    stream = DataStream(spool, 10 * 1024 * 1024)
    buf = bytearray()
    chunk = b"x" * 65536
    fed = Fed.MORE
    reads = 0
    while fed is Fed.MORE:
        buf += chunk
        fed, _ = stream.feed(buf)
        reads += 1
        assert len(buf) <= 1 and spool.size == 0  # nothing kept of the endless line
        assert reads < 200
    assert fed is Fed.TOO_BIG and stream.size > 10 * 1024 * 1024


def test_a_cr_at_the_end_of_a_dropped_read_still_ends_the_line() -> None:
    fed, _, _ = feed([b"z" * (DATA_LINE_MAX + 1) + b"\r", b"\n", b".\r\n"])
    assert fed is Fed.TOO_LONG


def test_size_counts_lines_as_they_come_and_stops_at_once() -> None:
    line = b"y" * 998 + b"\r\n"
    fed, _, _ = feed([line * 11, line * 1000], max_bytes=10_000)
    assert fed is Fed.TOO_BIG
    fed, message, _ = feed([line * 10 + b".\r\n"], max_bytes=10_000)  # exactly the limit
    assert fed is Fed.DONE and len(message) == 10_000


def test_a_big_message_waits_in_a_file_and_comes_out_once_as_it_came() -> None:
    body = b"".join(b"line %06d\r\n" % i for i in range(60_000))  # 660 kB
    assert len(body) > SPOOL_IN_MEMORY
    spool = Spool()
    stream = DataStream(spool, 10_000_000)
    buf = bytearray()
    for i in range(0, len(body), 70_000):
        buf += body[i : i + 70_000]
        assert stream.feed(buf)[0] is Fed.MORE
    buf += b".\r\n"
    assert stream.feed(buf)[0] is Fed.DONE
    assert spool.size == len(body)
    assert spool.take() == body
    assert spool.take() == b""  # taken once


@pytest.mark.parametrize(
    ("arg", "keyword", "esmtp", "expected"),
    [
        ("FROM:<>", "FROM:", True, ("", [])),
        (
            "from: <a@b.example> SIZE=100 BODY=8BITMIME",
            "FROM:",
            True,
            ("a@b.example", ["SIZE=100", "BODY=8BITMIME"]),
        ),
        ("TO:<@relay.example:victim@c.example>", "TO:", True, ("victim@c.example", [])),
        ('TO:<"x>y@z"@b.example>', "TO:", True, ('"x>y@z"@b.example', [])),
        ("TO:a@b.example", "TO:", False, ("a@b.example", [])),
        ("FROM:<a@b.example> SIZE=1", "FROM:", False, None),  # parameters need EHLO
        ("TO:<a@b.example", "TO:", True, None),
        ("TO:<no-domain>", "TO:", True, None),
        ("TO:<a b@c.example>", "TO:", True, None),
        ("TO:<a@b.example> =bad", "TO:", True, None),
        ("FROM <a@b.example>", "FROM:", True, None),
    ],
)
def test_mail_and_rcpt_paths(
    arg: str, keyword: str, esmtp: bool, expected: tuple[str, list[str]] | None
) -> None:
    assert parse_path(arg, keyword, esmtp) == expected
