"""Bounded HTTP(S) and local-file fetching with conditional GET.

Every limit is enforced here, before any parsing: a total deadline, a size cap counted
while the (decompressed) body streams in, a redirect cap, and where connections may go:
public addresses only, unless the source allows private ones (`ingest.guard`).
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from digestd import __version__
from digestd.core.config import Settings
from digestd.ingest.guard import REFUSED, GuardedBackend, GuardedTransport, Policy, Resolver

MAX_REDIRECTS = 5
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/json;q=0.9,"
    " application/xml;q=0.9, text/xml;q=0.8, */*;q=0.5"
)


class FetchError(Exception):
    """A fetch that produced no usable document; the message is one line for the source's log."""


@dataclass
class Fetched:
    """A document (status 200) or the news that it has not changed (status 304)."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None

    @property
    def not_modified(self) -> bool:
        return self.status == 304


def user_agent(settings: Settings) -> str:
    """`digestd/<version> (+base_url)`: names us and says where to find the operator."""
    return f"digestd/{__version__} (+{settings.base_url})"


def make_client(
    settings: Settings,
    *,
    allow_private: bool = False,
    resolve: Resolver | None = None,
    policy: Policy | None = None,
) -> httpx.AsyncClient:
    """One pooled client per run; redirects followed up to MAX_REDIRECTS, every connection
    (the first and each redirect's) to a public address unless `allow_private`.

    `resolve` and `policy` replace the system resolver and the public-only rule (tests).
    Proxies from the environment are not used (trust_env=False): a proxy would make the
    connection for us, out of reach of the address check."""
    guard: dict[str, Any] = {"allow_private": allow_private}
    if resolve is not None:
        guard["resolve"] = resolve
    if policy is not None:
        guard["policy"] = policy
    limits = httpx.Limits(max_connections=settings.fetch_concurrency * 2)
    return httpx.AsyncClient(
        transport=GuardedTransport(limits=limits, backend=GuardedBackend(**guard)),
        timeout=httpx.Timeout(settings.fetch_timeout),
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        headers={"User-Agent": user_agent(settings), "Accept": ACCEPT},
        trust_env=False,
    )


def local_path(url: str) -> Path | None:
    """The filesystem path of a file:// URL or a plain path; None for http(s)."""
    if url.startswith("file://"):
        return Path(unquote(urlsplit(url).path))
    if "://" not in url:
        return Path(url)
    return None


async def fetch(
    client: httpx.AsyncClient,
    url: str,
    *,
    settings: Settings,
    etag: str | None = None,
    last_modified: str | None = None,
    allow_local: bool = True,
) -> Fetched:
    """The document at `url`, or a 304 when the validators still match; FetchError otherwise.

    A local file is read only when `allow_local` (its source allows this machine)."""
    path = local_path(url)
    if path is not None:
        if not allow_local:
            raise FetchError(f"{REFUSED} this source may not read local files (--allow-private)")
        return await asyncio.to_thread(_read_local, path, settings.fetch_max_bytes, etag)
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    timeout = settings.fetch_timeout
    try:
        # httpx's timeout is per network operation; this deadline bounds a server that
        # trickles one byte at a time as well.
        async with asyncio.timeout(timeout):
            return await _get(client, url, headers, settings.fetch_max_bytes)
    except TimeoutError:
        raise FetchError(f"timed out after {timeout:g}s") from None
    except httpx.TimeoutException:
        raise FetchError(f"timed out after {timeout:g}s") from None
    except httpx.TooManyRedirects:
        raise FetchError(f"too many redirects (more than {MAX_REDIRECTS})") from None
    except httpx.UnsupportedProtocol as exc:  # a redirect to file:, ftp:, …
        raise FetchError(f"{REFUSED} {str(exc).strip()[:200]}") from None
    except httpx.ConnectError as exc:
        if str(exc).startswith(REFUSED):
            raise FetchError(str(exc)) from None
        raise FetchError(f"ConnectError: {_first_line(exc)}") from None
    except httpx.HTTPError as exc:
        raise FetchError(f"{type(exc).__name__}: {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


async def _get(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], max_bytes: int
) -> Fetched:
    async with client.stream("GET", url, headers=headers) as response:
        if response.status_code == 304:
            return Fetched(
                status=304,
                etag=response.headers.get("etag"),
                last_modified=response.headers.get("last-modified"),
            )
        if not 200 <= response.status_code < 300:
            raise FetchError(f"HTTP {response.status_code} {response.reason_phrase}".strip())
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise FetchError(f"response too large ({int(declared)} bytes, limit {max_bytes})")
        chunks: list[bytes] = []
        total = 0
        # aiter_bytes yields decoded (gunzipped) data: the cap also stops compression bombs.
        async for chunk in response.aiter_bytes():
            total += len(chunk)
            if total > max_bytes:
                raise FetchError(f"response too large (over {max_bytes} bytes)")
            chunks.append(chunk)
        return Fetched(
            status=200,
            body=b"".join(chunks),
            headers=dict(response.headers),
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
        )


def _read_local(path: Path, max_bytes: int, etag: str | None) -> Fetched:
    # Files get validators too (size + mtime), so an unchanged file costs no parsing.
    try:
        stat = path.stat()
        if not path.is_file():
            raise FetchError(f"not a file: {path}")
        tag = '"' + hashlib.sha1(f"{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest() + '"'
        modified = formatdate(stat.st_mtime, usegmt=True)
        if etag == tag:
            return Fetched(status=304, etag=tag, last_modified=modified)
        if stat.st_size > max_bytes:
            raise FetchError(f"file too large ({stat.st_size} bytes, limit {max_bytes})")
        with path.open("rb") as fh:
            body = fh.read(max_bytes + 1)
    except OSError as exc:
        raise FetchError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(body) > max_bytes:
        raise FetchError(f"file too large (over {max_bytes} bytes)")
    return Fetched(status=200, body=body, headers={}, etag=tag, last_modified=modified)
