"""The DKIM signing process (`dkim_offload`): signs what its parent sends, in batches.

    python -m digestd.mail.dkim_child KEY_FILE [KEY_FILE…]

It reads the private keys from the files named (DIGESTD_DKIM_KEY_FILE, then maybe
DIGESTD_DKIM_ED25519_KEY_FILE: the keys themselves never go over the pipe), then says which
keys it holds (the SHA-256 of each public key, so its parent can check they are its own).
Then, until its standard input ends, it reads a frame (a 4-byte big-endian length and that
many bytes) of requests, each a key's index, a length and the canonical data to sign, and
answers one frame: status 0 and each signature (a 2-byte length, the signature), or status
1 and one line saying what failed. Interrupts are its parent's to handle: it ends when its
parent closes the pipe (or dies).
"""

from __future__ import annotations

import hashlib
import signal
import struct
import sys
from pathlib import Path
from typing import BinaryIO

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from digestd.mail.dkim import DkimKey, load_private_key

FRAME = struct.Struct(">I")
REQUEST = struct.Struct(">BI")  # key index, data length
SIGNATURE = struct.Struct(">H")
OK, FAILED = b"\x00", b"\x01"


def fingerprint(private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    """SHA-256 of a private key's public half (DER SubjectPublicKeyInfo): 32 bytes."""
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).digest()


def read_frame(stream: BinaryIO) -> bytes | None:
    """One frame's bytes, or None at the end of the stream."""
    head = stream.read(FRAME.size)
    if len(head) < FRAME.size:
        return None
    (size,) = FRAME.unpack(head)
    data = stream.read(size)
    return data if len(data) == size else None


def write_frame(stream: BinaryIO, payload: bytes) -> None:
    """Write one frame and flush it."""
    stream.write(FRAME.pack(len(payload)) + payload)
    stream.flush()


def sign_batch(keys: list[DkimKey], payload: bytes) -> bytes:
    """The answer to one frame of requests (see the module's docstring)."""
    out = [OK]
    at = 0
    while at < len(payload):
        index, size = REQUEST.unpack_from(payload, at)
        at += REQUEST.size
        signature = keys[index].sign(payload[at : at + size])
        at += size
        out += (SIGNATURE.pack(len(signature)), signature)
    return b"".join(out)


def main(argv: list[str]) -> int:
    """Run the signing process on the key files in `argv` (see the module's docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    try:
        keys = [DkimKey("", load_private_key(Path(p))) for p in argv]
    except Exception as exc:
        write_frame(stdout, FAILED + str(exc).encode("utf-8", "replace"))
        return 1
    write_frame(stdout, OK + b"".join(fingerprint(k.private) for k in keys))
    while (payload := read_frame(stdin)) is not None:
        try:
            answer = sign_batch(keys, payload)
        except Exception as exc:
            answer = FAILED + f"{type(exc).__name__}: {exc}".encode("utf-8", "replace")
        write_frame(stdout, answer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
