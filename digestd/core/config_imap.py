"""The IMAP mailbox setting (DIGESTD_INBOUND_IMAP): its URL taken apart, the folder name,
and URLs with their password masked; kept beside `config` so that module stays small (they
are re-exported there)."""

from __future__ import annotations

from dataclasses import dataclass, field

IMAP_TLS_MODES = ("tls", "starttls", "none")


@dataclass(frozen=True)
class ImapTarget:
    """Where IMAP polling reads: server, login, mailbox and how the connection is protected."""

    host: str
    port: int
    username: str
    password: str = field(repr=False)
    mailbox: str
    tls: str  # one of IMAP_TLS_MODES

    def describe(self) -> str:
        """`user@host:port/mailbox (tls)` for logs: never the password."""
        return f"{self.username}@{self.host}:{self.port}/{self.mailbox} ({self.tls})"


def parse_imap_url(raw: str) -> ImapTarget:
    """`imaps://user:password@host[:993][/MAILBOX]` (implicit TLS) or
    `imap://user:password@host[:143][/MAILBOX][?tls=starttls|none]` (STARTTLS unless told
    otherwise); ValueError with a reason that never contains the password."""
    from urllib.parse import parse_qs, unquote, urlsplit

    value = raw.strip()
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError("must be imaps://USER:PASSWORD@HOST[:PORT][/MAILBOX]") from None
    scheme = parts.scheme.lower()
    if scheme not in ("imap", "imaps"):
        raise ValueError(
            "must start with imaps:// (TLS) or imap:// (STARTTLS; ?tls=none for plain), "
            f"got {scheme + '://' if scheme else 'no scheme'}"
        )
    if not parts.hostname:
        raise ValueError("has no host (imaps://USER:PASSWORD@HOST[:PORT][/MAILBOX])")
    if not parts.username or parts.password is None:
        raise ValueError("needs a user and a password (imaps://USER:PASSWORD@HOST…)")
    query = parse_qs(parts.query)
    tls = "tls" if scheme == "imaps" else "starttls"
    if "tls" in query:
        tls = query["tls"][-1].lower()
        if tls not in IMAP_TLS_MODES or (scheme == "imaps") != (tls == "tls"):
            choices = "tls" if scheme == "imaps" else "starttls or none"
            raise ValueError(f"?tls= must be {choices} for {scheme}://")
    mailbox = unquote(parts.path.lstrip("/")) or "INBOX"
    folder(mailbox)
    return ImapTarget(
        host=parts.hostname,
        port=port or (993 if scheme == "imaps" else 143),
        username=unquote(parts.username),
        password=unquote(parts.password),
        mailbox=mailbox,
        tls=tls,
    )


def mask_url_password(url: str) -> str:
    """The URL with its password (if any) replaced by ********."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:
        return "********"
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:********@{hostport}"))


def imap_url(raw: str) -> str | None:
    """DIGESTD_INBOUND_IMAP: None when empty, else the URL once it parses."""
    if not raw.strip():
        return None
    parse_imap_url(raw)
    return raw.strip()


def folder(raw: str) -> str:
    """An IMAP folder name digestd can use as it is (ASCII, no quotes or wildcards)."""
    value = raw.strip()
    if not value or not value.isascii() or any(c in value for c in '\r\n"\\*%') or len(value) > 200:
        raise ValueError(f"must be an ASCII mailbox name without quotes, got {raw!r}")
    return value
