"""DKIM keys on disk and in DNS: `digestd dkim keygen` writes a private key (mode 0600, never
printed) and tells the TXT record to publish; `digestd doctor` compares a published record
with the key file (`compare`)."""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from digestd.mail.dkim import load_private_key, txt_record

RSA_BITS = 2048  # what Gmail and Yahoo require (1024 is refused by some receivers)

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class KeyRecord:
    """A key file and the DNS record that publishes it."""

    path: Path
    selector: str
    name: str  # <selector>._domainkey.<domain>
    value: str  # v=DKIM1; k=…; p=…
    kind: str  # "RSA-2048", "Ed25519"
    written: bool  # False: the file existed and was kept

    def zone_line(self) -> str:
        """The record as a zone-file line, split into ≤255-character strings."""
        chunks = [self.value[i : i + 255] for i in range(0, len(self.value), 255)]
        return f"{self.name}. IN TXT ( " + " ".join(f'"{c}"' for c in chunks) + " )"


def describe(key: PrivateKey) -> str:
    return f"RSA-{key.key_size}" if isinstance(key, rsa.RSAPrivateKey) else "Ed25519"


def keygen(out: Path, selector: str, domain: str, *, ed25519_key: bool = False) -> list[KeyRecord]:
    """Write `<selector>.private` (RSA-2048) into `out` and, with `ed25519_key`, also
    `<selector>-ed25519.private` (its own selector: one key per DNS name). A file that
    exists already is kept, never overwritten (its record is told again)."""
    wanted: list[tuple[str, type]] = [(selector, rsa.RSAPrivateKey)]
    if ed25519_key:
        wanted.append((f"{selector}-ed25519", ed25519.Ed25519PrivateKey))
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for name, kind in wanted:
        path = out / f"{name}.private"
        written = not path.exists()
        if written:
            key: PrivateKey = (
                rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
                if kind is rsa.RSAPrivateKey
                else ed25519.Ed25519PrivateKey.generate()
            )
            _write_private(path, key)
        else:
            key = load_private_key(path)
            if not isinstance(key, kind):
                raise ValueError(f"{path} exists and holds another kind of key; move it away")
        records.append(
            KeyRecord(
                path, name, f"{name}._domainkey.{domain}", txt_record(key), describe(key), written
            )
        )
    return records


def _write_private(path: Path, key: PrivateKey) -> None:
    """PKCS#8 PEM, created with mode 0600 (never readable by others, not even briefly)."""
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def record_tags(record: str) -> dict[str, str]:
    """`k=v; k=v` tags of a DKIM record, keys lowercased, white space in values removed."""
    out: dict[str, str] = {}
    for part in record.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            out[key.strip().lower()] = "".join(value.split())
    return out


def compare(record: str, key: PrivateKey) -> str | None:
    """None when `record` publishes `key`'s public half, else what is wrong with the record
    (a sentence starting with a verb)."""
    tags = record_tags(record)
    published = tags.get("p", "")
    expected = record_tags(txt_record(key))
    if not published:
        return "is revoked (empty p=)"
    kind = tags.get("k", "rsa").lower()
    if kind != expected["k"]:
        return f"has k={kind} where the key file holds an {describe(key)} key"
    if published == expected["p"]:
        return None
    try:
        raw = base64.b64decode(published, validate=True)
        if kind == "rsa":
            serialization.load_der_public_key(raw)
        elif len(raw) != 32:
            raise ValueError("not 32 bytes")
    except (ValueError, binascii.Error):
        return "has a p= that is not a valid public key"
    return "publishes another key than the key file holds"
