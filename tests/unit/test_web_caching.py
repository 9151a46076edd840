"""Conditional GET decisions (RFC 9110 13.1): If-None-Match first, If-Modified-Since else."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from starlette.requests import Request

from digestd.web.caching import PageCache, Validators, not_modified

V = Validators.of(("page", 1), datetime(2026, 11, 26, 8, 0, 30, 500000, tzinfo=UTC))


def request(**headers: str) -> Request:
    raw = [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw})


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, False),
        ({"if_none_match": V.etag}, True),
        ({"if_none_match": V.etag.removeprefix("W/")}, True),  # weak comparison
        ({"if_none_match": f'"other", {V.etag}'}, True),
        ({"if_none_match": "*"}, True),
        ({"if_none_match": '"other"'}, False),
        # If-None-Match wins over a matching date.
        ({"if_none_match": '"other"', "if_modified_since": "Thu, 26 Nov 2026 09:00:00 GMT"}, False),
        ({"if_modified_since": "Thu, 26 Nov 2026 08:00:30 GMT"}, True),  # whole seconds
        ({"if_modified_since": "Thu, 26 Nov 2026 08:00:29 GMT"}, False),
        ({"if_modified_since": "yesterday"}, False),
    ],
)
def test_not_modified(headers: dict[str, str], expected: bool) -> None:
    assert not_modified(request(**headers), V) is expected


def test_validators_differ_by_version_and_headers_are_http_dates() -> None:
    assert Validators.of(("page", 2), V.last_modified).etag != V.etag
    assert V.etag.startswith('W/"')
    headers = V.headers("public, no-cache")
    assert headers["Last-Modified"] == "Thu, 26 Nov 2026 08:00:30 GMT"


def test_page_cache_builds_once_per_etag_and_stays_bounded() -> None:
    cache = PageCache(size=2)
    built: list[str] = []

    def build(tag: str) -> bytes:
        built.append(tag)
        return tag.encode()

    for tag in ("a", "a", "b", "a", "c", "b"):
        assert cache.get_or_build(tag, lambda t=tag: build(t)) == tag.encode()
    assert built == ["a", "b", "c", "b"] and cache.renders == 4
