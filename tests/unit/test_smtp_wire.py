"""`smtp_pool.wire_data` writes what aiosmtplib's own DATA path would write (line ends made
CRLF, a leading "." doubled, CRLF "." CRLF at the end), while skipping the work for
messages that are already CRLF, as every digest is."""

from __future__ import annotations

import random

import pytest
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

from digestd.mail.smtp_pool import wire_data


def aiosmtplib_wire(data: bytes) -> bytes:
    """What aiosmtplib's execute_data_command writes for `data`."""
    return PERIOD_REGEX.sub(b"..", normalize_message_line_endings(data)) + b".\r\n"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"Subject: x\r\n\r\nbody\r\n",
        b"Subject: x\r\n\r\nno final line end",
        b"Subject: x\n\nbare LF\n.leading dot\n",
        b"bare CR\rin the middle\r",
        b"CR CR LF\r\r\nand LF CR\n\r",
        b".\r\n",
        b".starts with a dot\r\n..two dots\r\n",
        b"ends with a lone dot line\r\n.\r\n",
        b"=2E quoted dot\r\n.x\r\n",
    ],
)
def test_same_bytes_as_aiosmtplib(data: bytes) -> None:
    assert wire_data(data) == aiosmtplib_wire(data)


def test_same_bytes_as_aiosmtplib_for_random_mixes_of_line_ends_and_dots() -> None:
    rng = random.Random(5321)
    for _ in range(3000):
        data = bytes(rng.choice(b"a.\r\n") for _ in range(rng.randint(0, 24)))
        assert wire_data(data) == aiosmtplib_wire(data), data


def test_a_crlf_message_without_leading_dots_is_only_terminated() -> None:
    data = b"Subject: x\r\n\r\n" + b"=3D line of quoted-printable text=\r\n" * 500
    assert wire_data(data) == data + b".\r\n"
