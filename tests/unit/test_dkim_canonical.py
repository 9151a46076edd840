"""DKIM canonicalization: a digest template's body hash, computed from its shared pieces
canonicalized once and the values filled in (the fast path), is the hash of the whole
message's body canonicalized at once; RFC 6376's own examples; keys and records."""

from __future__ import annotations

import base64
import hashlib
import random

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from digestd.mail.dkim import (
    DkimKey,
    DkimSigner,
    relaxed_body,
    relaxed_header,
    split_headers,
    txt_record,
)
from digestd.mail.mime import SlotPart, build_digest_template, from_wire

CHARS = [" ", "  ", "\t", "\n", "\n\n", ".", "=", "a", "Zoë", "é", "<p>", "  x  ", "\r\n", "%"]


def test_relaxed_rules_of_rfc_6376_section_3_4_5() -> None:
    head = b"A: X\r\nB : Y\t\r\n\tZ  \r\n"
    assert [relaxed_header(n, v) for n, v in split_headers(head)] == [b"a:X\r\n", b"b:Y Z\r\n"]
    assert relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n") == b" C\r\nD E\r\n"
    assert relaxed_body(b"") == b""
    assert relaxed_body(b"\r\n\r\n") == b""


def _signed_body_hash(message: bytes) -> str:
    """bh= of the (first) signature."""
    head = message.split(b"\r\n\r\n")[0].decode()
    return head.split("bh=")[1].split(";")[0]


@pytest.mark.parametrize("seed", range(40))
def test_the_fast_path_hashes_what_the_whole_body_canonicalizes_to(seed: int) -> None:
    rng = random.Random(seed)

    def text(n: int) -> str:
        return "".join(rng.choice(CHARS) for _ in range(n))

    def part(subtype: str) -> SlotPart:
        pieces: list[str] = [text(rng.randint(0, 60))]
        for i in range(rng.randint(0, 4)):
            pieces += [f"slot{i}", text(rng.randint(0, 60))]
        return SlotPart(subtype, pieces)

    parts = [part("plain")] + ([part("html")] if seed % 2 else [])
    template = build_digest_template(sender="D <d@example.net>", subject=text(8), parts=parts)
    values = {p.subtype: {name: text(rng.randint(0, 30)) for name in p.parts[1::2]} for p in parts}
    key = DkimKey("s", ed25519.Ed25519PrivateKey.generate())
    data = template.fill(
        to_email="a@example.org",
        to_name="",
        message_id="<m@example.net>",
        unsubscribe_url="https://example.net/u",
        date="Thu, 26 Nov 2026 08:30:00 +0000",
        values=values,
        signer=DkimSigner("example.net", [key]),
    )
    assert data is not None
    message = from_wire(data)
    body = message.partition(b"\r\n\r\n")[2]
    whole = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest()).decode()
    assert _signed_body_hash(message) == whole


def test_records_publish_the_public_half() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    value = txt_record(key)
    assert value.startswith("v=DKIM1; k=ed25519; p=")
    assert len(base64.b64decode(value.split("p=")[1])) == 32


@pytest.mark.parametrize("seed", range(3))
def test_signatures_of_many_header_shapes_across_seconds_verify_with_dkimpy(seed: int) -> None:
    # The header data's order (h=) is planned once per shape of message and the tag list
    # once per second (`dkim._plan`, `dkim._tag_list_start`): every shape and second must
    # still sign exactly what a verifier canonicalizes.
    import dkim as dkimpy

    rnd = random.Random(seed)
    key = ed25519.Ed25519PrivateKey.generate()
    now = [1_795_000_000.0]
    signer = DkimSigner("example.net", [DkimKey("s1", key)], clock=lambda: now[0])
    names = ["From", "To", "to", "Subject", "Date", "Message-ID", "List-Id", "X-Other", "CC"]
    values = [" a@example.net", "  two  spaces\t ", " folded\r\n\tline  ", " x", "\tq", ""]
    txt = txt_record(key).encode()
    for _ in range(30):
        now[0] += rnd.choice([0, 0.4, 1, 3])
        head = "".join(
            f"{rnd.choice(names)}:{rnd.choice(values)}\r\n" for _ in range(rnd.randint(1, 8))
        )
        signed = signer.sign(head.encode() + b"\r\nbody  \r\n")
        assert f"t={int(now[0])};".encode() in signed
        assert dkimpy.verify(signed, dnsfunc=lambda name, timeout=5: txt)
