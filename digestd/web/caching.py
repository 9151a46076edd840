"""Conditional GET for the public pages and feeds: validators, 304s, and rendered bodies.

A page's validators come from a cheap stamp of the data it shows (one aggregate query);
a request whose If-None-Match (or, without one, If-Modified-Since) matches gets a 304
before anything is loaded or rendered. Otherwise the body is served from a small
in-process cache keyed by the ETag, and rendered (one query for the papers) on a miss.
ETags are weak: a page re-rendered from the same data carries a fresh form token.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime

from fastapi.responses import Response
from starlette.requests import Request

PAGE_CACHE_SIZE = 64


@dataclass(frozen=True)
class Validators:
    """The ETag and Last-Modified of one version of a page."""

    etag: str
    last_modified: datetime

    @classmethod
    def of(cls, parts: tuple[object, ...], last_modified: datetime) -> Validators:
        """Validators for a page version described by `parts` (anything with a stable repr)."""
        digest = hashlib.sha256(repr(parts).encode()).hexdigest()[:32]
        return cls(f'W/"{digest}"', last_modified)

    def headers(self, cache_control: str) -> dict[str, str]:
        return {
            "ETag": self.etag,
            "Last-Modified": format_datetime(self.last_modified.replace(microsecond=0), True),
            "Cache-Control": cache_control,
        }


def not_modified(request: Request, validators: Validators) -> bool:
    """Whether the client's copy is current (RFC 9110 13.1: If-None-Match wins)."""
    none_match = request.headers.get("if-none-match")
    if none_match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in none_match.split(",")}
        return "*" in tags or validators.etag.removeprefix("W/") in tags
    since = request.headers.get("if-modified-since")
    if since is None:
        return False
    try:
        when = parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False  # an unreadable date is ignored, as the RFC says
    if when.tzinfo is None:
        return False
    return int(validators.last_modified.timestamp()) <= int(when.timestamp())


class PageCache:
    """Rendered bodies by ETag, least recently used dropped first (thread-safe: routes run
    in the thread pool). `renders` counts cache misses, for tests and benchmarks."""

    def __init__(self, size: int = PAGE_CACHE_SIZE) -> None:
        self.size = size
        self._bodies: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.renders = 0

    def get_or_build(self, etag: str, build: Callable[[], bytes]) -> bytes:
        with self._lock:
            body = self._bodies.get(etag)
            if body is not None:
                self._bodies.move_to_end(etag)
                return body
        # Built outside the lock: two concurrent misses may both build; both are correct.
        body = build()
        with self._lock:
            self.renders += 1
            self._bodies[etag] = body
            while len(self._bodies) > self.size:
                self._bodies.popitem(last=False)
        return body


def conditional(
    request: Request,
    cache: PageCache,
    validators: Validators,
    build: Callable[[], bytes],
    *,
    media_type: str,
    cache_control: str,
) -> Response:
    """A 304, the cached body, or a freshly built one, with the validators as headers."""
    headers = validators.headers(cache_control)
    if not_modified(request, validators):
        return Response(status_code=304, headers=headers)
    body = cache.get_or_build(validators.etag, build)
    return Response(body, media_type=media_type, headers=headers)
