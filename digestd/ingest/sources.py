"""Sources: adding, listing, removing, which are due, and recording each fetch's health.

Services never commit: the caller owns the transaction (`session_scope`).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

from sqlmodel import Session, col, or_, select

from digestd.core.models import SOURCE_KINDS, Source
from digestd.core.netaddr import IPAddress, is_public

MAX_BACKOFF = timedelta(days=1)


class InvalidSource(ValueError):
    """Bad source input; the message is one line saying what is wrong."""


def normalize_location(raw: str, *, allow_private: bool = False) -> str:
    """An http(s) URL as given, or a local path / file:// URL as an absolute file:// URL.

    Where a source may go is decided here once, at add time, and at every connection
    (`ingest.guard`): an http(s) URL naming a private or local address (an IP literal in
    any spelling, `localhost`) needs `allow_private`; so does a `file://` URL (such URLs are
    what gets pasted from elsewhere). A plain path is an admin naming a file on this
    machine, which is what they mean: always accepted (see `add_source`)."""
    value = (raw or "").strip()
    if not value:
        raise InvalidSource("source URL or path is empty")
    if any(c in value for c in "\r\n\t"):
        raise InvalidSource("source URL must be on one line")
    if value.lower().startswith(("http://", "https://")):
        try:
            parts = urlsplit(value)
            host = parts.hostname
        except ValueError:
            raise InvalidSource(f"not a valid URL: {value}") from None
        if not host:
            raise InvalidSource(f"URL has no host: {value}")
        if len(value) > 2048:
            raise InvalidSource("URL is longer than 2048 characters")
        private = _private_host(host)
        if private and not allow_private:
            raise InvalidSource(
                f"{value} points at {private}, not the public internet; "
                "add it with --allow-private if this machine or your network is meant"
            )
        return value
    if value.lower().startswith("file://"):
        if not allow_private:
            raise InvalidSource(
                "a file:// URL reads this machine: give the file's path instead, "
                "or add --allow-private"
            )
        path = Path(unquote(urlsplit(value).path))
    elif "://" in value:
        scheme = value.split("://", 1)[0]
        raise InvalidSource(f"unsupported URL scheme {scheme!r} (use http, https, file or a path)")
    else:
        path = Path(value).expanduser()
    path = path.resolve()
    if not path.is_file():
        raise InvalidSource(f"no such file: {path}")
    return path.as_uri()


def _private_host(host: str) -> str:
    """What a URL's host names when it is not on the public internet ('' otherwise, or when
    only a resolver can tell: names are checked at each connection)."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return f"{host} (this machine)"
    try:
        address: IPAddress = ipaddress.ip_address(name)
    except ValueError:
        try:  # the legacy IPv4 spellings a resolver accepts: 2130706433, 0x7f.1, 127.1
            address = ipaddress.IPv4Address(socket.inet_aton(name))
        except OSError:
            return ""
    return "" if is_public(address) else f"{address}, a private or local address"


def validate_kind(kind: str | None) -> str:
    """The kind, lower-cased, if it is one we can parse."""
    value = (kind or "auto").strip().lower()
    if value not in SOURCE_KINDS:
        raise InvalidSource(f"unknown kind {kind!r} (choose from {', '.join(SOURCE_KINDS)})")
    return value


def get_by_url(session: Session, url: str) -> Source | None:
    return session.exec(select(Source).where(Source.url == url)).first()


def add_source(
    session: Session,
    location: str,
    *,
    now: datetime,
    name: str = "",
    kind: str | None = None,
    allow_private: bool = False,
) -> Source:
    """A new enabled source, due at once; InvalidSource if the input is bad or already there.

    `allow_private` lets it (and its redirects) reach this machine and private networks; a
    source given as a local path gets it too (reading this machine is what it is for)."""
    url = normalize_location(location, allow_private=allow_private)
    kind = validate_kind(kind)
    existing = get_by_url(session, url)
    if existing is not None:
        raise InvalidSource(f"source already exists: #{existing.id} {url}")
    name = " ".join((name or "").split())[:200] or _default_name(url)
    local = url.startswith("file:")
    source = Source(
        url=url,
        kind=kind,
        name=name,
        created_at=now,
        next_fetch_at=now,
        allow_private=allow_private or local,
    )
    session.add(source)
    session.flush()
    return source


def set_allow_private(session: Session, source_id: int, allowed: bool) -> Source:
    """Let a source reach this machine and private networks, or stop it (`sources set`)."""
    source = session.get(Source, source_id)
    if source is None:
        raise InvalidSource(f"no source with id {source_id}")
    if not allowed and source.url.startswith("file:"):
        raise InvalidSource(f"source #{source_id} is a local file: it reads this machine")
    source.allow_private = allowed
    session.flush()
    return source


def ensure_source(session: Session, location: str, *, now: datetime) -> Source:
    """The source for `location`, added if it is not there yet (demo and `ingest_file`:
    a local path, or a URL it already added)."""
    local = "://" not in location or location.lower().startswith("file://")
    url = normalize_location(location, allow_private=local)
    return get_by_url(session, url) or add_source(session, url, now=now, allow_private=local)


def _default_name(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "file":
        return Path(unquote(parts.path)).name
    return (parts.hostname or "") + parts.path.rstrip("/")


def list_sources(session: Session) -> list[Source]:
    return list(session.exec(select(Source).order_by(col(Source.id))))


def get_sources(session: Session, ids: Sequence[int]) -> list[Source]:
    """The sources with these ids, in id order; InvalidSource naming any that do not exist."""
    wanted = sorted(set(ids))
    found = list(
        session.exec(select(Source).where(col(Source.id).in_(wanted)).order_by(col(Source.id)))
    )
    missing = sorted(set(wanted) - {s.id for s in found})
    if missing:
        raise InvalidSource(f"no source with id {', '.join(map(str, missing))}")
    return found


def due_sources(session: Session, now: datetime) -> list[Source]:
    """Enabled sources whose next fetch time has come (or was never set)."""
    query = (
        select(Source)
        .where(Source.enabled == True)  # noqa: E712 - SQL expression
        .where(or_(col(Source.next_fetch_at).is_(None), col(Source.next_fetch_at) <= now))
        .order_by(col(Source.id))
    )
    return list(session.exec(query))


def enabled_sources(session: Session) -> list[Source]:
    query = select(Source).where(Source.enabled == True).order_by(col(Source.id))  # noqa: E712
    return list(session.exec(query))


def remove_source(session: Session, source_id: int) -> Source:
    """Delete a source; its entries stay (they may have been mailed), its guid records go."""
    source = session.get(Source, source_id)
    if source is None:
        raise InvalidSource(f"no source with id {source_id}")
    session.delete(source)
    session.flush()
    return source


def get_source(session: Session, source_id: int) -> Source:
    """The source with this id; InvalidSource when there is none."""
    source = session.get(Source, source_id)
    if source is None:
        raise InvalidSource(f"no source with id {source_id}")
    return source


def set_enabled(session: Session, source_id: int, enabled: bool, *, now: datetime) -> Source:
    """Pause a source (its entries stay, it is not fetched) or take it back (due at once)."""
    source = get_source(session, source_id)
    if enabled and not source.enabled:
        source.next_fetch_at = now
    source.enabled = enabled
    session.flush()
    return source


def rename(session: Session, source_id: int, name: str) -> Source:
    """A source's display name: one line, at most 200 characters, not empty."""
    cleaned = " ".join((name or "").split())
    if not cleaned:
        raise InvalidSource("a source's name cannot be empty")
    if len(cleaned) > 200:
        raise InvalidSource(f"a source's name has at most 200 characters, got {len(cleaned)}")
    source = get_source(session, source_id)
    source.name = cleaned
    session.flush()
    return source


MIN_INTERVAL_MINUTES = 5
MAX_INTERVAL_MINUTES = 7 * 24 * 60


def set_interval(session: Session, source_id: int, minutes: int | None, *, now: datetime) -> Source:
    """How often a source is fetched (None: DIGESTD_FETCH_INTERVAL_MINUTES); the next fetch
    moves to the new interval after the last one (never later than it was due)."""
    if minutes is not None and not MIN_INTERVAL_MINUTES <= minutes <= MAX_INTERVAL_MINUTES:
        raise InvalidSource(
            f"--interval must be {MIN_INTERVAL_MINUTES} to {MAX_INTERVAL_MINUTES} minutes"
            f" (a week), got {minutes}"
        )
    source = get_source(session, source_id)
    source.interval_minutes = minutes
    if minutes is not None and source.last_fetch_at is not None and not source.failures:
        sooner = source.last_fetch_at + timedelta(minutes=minutes)
        if source.next_fetch_at is None or sooner < source.next_fetch_at:
            source.next_fetch_at = max(sooner, now)
    session.flush()
    return source


def interval(source: Source, default_minutes: int) -> timedelta:
    return timedelta(minutes=source.interval_minutes or default_minutes)


def backoff_delay(failures: int, base: timedelta) -> timedelta:
    """base × 2^failures, capped at a day: a broken feed is retried less and less often."""
    delay: timedelta = min(base * (2 ** min(failures, 16)), MAX_BACKOFF)
    return delay


def record_success(
    source: Source,
    *,
    status: str,
    now: datetime,
    counts: dict[str, int],
    duration_ms: int,
    default_interval_minutes: int,
    etag: str | None,
    last_modified: str | None,
    note: str | None = None,
    fmt: str | None = None,
) -> None:
    """A fetch that worked (ok, partial or not modified): health reset, next fetch scheduled;
    `fmt` is the format the parse detected (kept as it was for a 304)."""
    source.last_status = status
    source.last_fetch_at = now
    source.last_success_at = now
    if fmt:
        source.format = fmt[:16]
    source.last_error = note
    source.last_duration_ms = duration_ms
    source.last_counts = dict(counts)
    source.failures = 0
    source.next_fetch_at = now + interval(source, default_interval_minutes)
    if etag is not None or last_modified is not None:
        source.etag = (etag or "")[:512] or None
        source.last_modified = (last_modified or "")[:128] or None


def record_failure(
    source: Source, *, now: datetime, error: str, duration_ms: int, default_interval_minutes: int
) -> None:
    """A failed fetch: counted, explained, and the next attempt pushed out exponentially."""
    source.last_status = "error"
    source.last_fetch_at = now
    source.last_error = error
    source.last_duration_ms = duration_ms
    source.last_counts = {"new": 0, "updated": 0, "unchanged": 0, "rejected": 0}
    source.failures = (source.failures or 0) + 1
    base = interval(source, default_interval_minutes)
    source.next_fetch_at = now + backoff_delay(source.failures, base)
