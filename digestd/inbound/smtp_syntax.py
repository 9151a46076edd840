"""The arguments of MAIL and RCPT (RFC 5321 4.1.2): a path in angle brackets and ESMTP
parameters, checked for shape only; whose address it is, is the listener's policy."""

from __future__ import annotations

import re

MAX_ADDRESS = 320  # 64 octets of local part, @, 255 of domain (RFC 5321 4.5.3.1)
_PARAM = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*(=[\x21-\x3c\x3e-\x7e]+)?")


def parse_path(arg: str, keyword: str, esmtp: bool) -> tuple[str, list[str]] | None:
    """`FROM:<a@b> PARAM...` as ("a@b", ["PARAM", ...]); None when malformed.

    The address is as it came, or "" for the null path `<>`. A source route
    (`<@relay:a@b>`) is dropped, as RFC 5321 4.1.1.3 says; parameters are only allowed
    after EHLO. A bare address without brackets is tolerated, as most MTAs do."""
    if arg[: len(keyword)].upper() != keyword:
        return None
    rest = arg[len(keyword) :].lstrip(" ")
    if rest.startswith("<"):
        close = _closing_bracket(rest)
        if close < 0:
            return None
        address, rest = rest[1:close], rest[close + 1 :]
        if address.startswith("@"):
            address = address.partition(":")[2]
    else:
        address, _, rest = rest.partition(" ")
    params = rest.split()
    if params and (not esmtp or not all(_PARAM.fullmatch(p) for p in params)):
        return None
    if address and not _mailbox(address):
        return None
    return address, params


def _closing_bracket(text: str) -> int:
    """The index of the `>` that closes the path (not one inside a quoted local part)."""
    quoted = escaped = False
    for i, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ">" and not quoted:
            return i
    return -1


def _mailbox(address: str) -> bool:
    """local@domain, both non-empty, no space outside a quoted local part."""
    if len(address) > MAX_ADDRESS:
        return False
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or " " in domain:
        return False
    quoted = len(local) >= 2 and local.startswith('"') and local.endswith('"')
    return quoted or " " not in local
