"""Doctor's DKIM check when digestd signs (DIGESTD_DKIM_KEY_FILE): the record published for
each selector must be the public half of its key file, and the verdict names which side is
wrong: the key file (unreadable, not a key), the record (missing, revoked, malformed, of
another kind) or neither alone (both valid, different keys: publish the file's record, or
point the setting at the key the record belongs to)."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from digestd.doctor.dns import Lookup
from digestd.doctor.result import Check, fail, ok, warn
from digestd.mail.dkim import DkimKeyError, load_private_key, txt_record
from digestd.mail.dkim_keys import RSA_BITS, compare, describe


def key_published(lookup: Lookup, selector: str, domain: str, path: Path, setting: str) -> Check:
    """One selector: does the TXT record at <selector>._domainkey.<domain> publish the key
    in `path` (the file named by `setting`)?"""
    where = f"{selector}._domainkey.{domain}"
    name = f"dkim {where}"
    try:
        key = load_private_key(path)
    except DkimKeyError as exc:
        return fail(
            name,
            f"the key file is wrong: {exc}",
            f"point {setting} at the private key (`digestd dkim keygen` writes one)",
        )
    expected = txt_record(key)
    publish = f'publish TXT at {where}: "{expected}"'
    records = [r for r in lookup.txt(where) if "p=" in r.lower()]
    if not records:
        return fail(name, f"the DNS record is missing: no key published at {where}", publish)
    if len(records) > 1:
        return fail(
            name, f"the DNS record is wrong: {len(records)} keys published at {where}", publish
        )
    problem = compare(records[0], key)
    if problem == "publishes another key than the key file holds":
        return fail(
            name,
            f"the DNS record and the key file do not match: the record at {where} {problem} "
            f"({path})",
            f"{publish} (or set {setting} to the key that record belongs to)",
        )
    if problem is not None:
        return fail(name, f"the DNS record is wrong: it {problem}", publish)
    detail = f"the published key matches {path.name} ({describe(key)})"
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < RSA_BITS:
        return warn(
            name,
            detail + f": shorter than the {RSA_BITS} bits Gmail and Yahoo require",
            f"make a {RSA_BITS}-bit key with `digestd dkim keygen` and publish it",
        )
    return ok(name, detail)
