"""Hostile requests to the subscription web: deep JSON, foreign Host headers, IPv6 networks."""

from __future__ import annotations

import pytest

from digestd.web.ratelimit import WebLimits, client_key
from tests.support.web import BASE_URL, WebHarness, harness, web_fixture  # noqa: F401  (the `web` fixture)

JSON = {"Content-Type": "application/json"}
DEEP_ARRAY = b"[" * 30_000 + b"]" * 30_000
DEEP_OBJECT = b'{"a":' * 5_000 + b"1" + b"}" * 5_000


@pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_OBJECT], ids=["array", "object"])
async def test_json_nested_thousands_of_levels_is_a_400_not_a_500(
    web: WebHarness, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async with web.client() as client:
        got = await client.post("/subscribe", content=body, headers=JSON)
    assert got.status_code == 400
    assert "not valid JSON" in got.json()["error"]
    assert "Traceback" not in caplog.text and "unexpected error" not in caplog.text


async def test_a_foreign_host_never_becomes_a_redirect_target(web: WebHarness) -> None:
    async with web.client() as client:
        got = await client.get("/archive/", headers={"Host": "evil.example"})
    assert got.status_code in (301, 307, 308)
    assert got.headers["location"] == f"{BASE_URL}/archive"


async def test_the_canonical_host_keeps_the_query(web: WebHarness) -> None:
    async with web.client() as client:
        got = await client.get("/archive/?x=1", headers={"Host": "127.0.0.1:9"})
    assert got.headers["location"] == f"{BASE_URL}/archive?x=1"


def test_an_ipv6_client_is_counted_by_its_64_network() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:ffff:1:2:3")
    assert client_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:198.51.100.7") == client_key("198.51.100.7") == "198.51.100.7"
    assert client_key("unknown") == "unknown"


async def test_sign_ups_from_one_ipv6_64_share_one_limit(app, smtp_server) -> None:
    limits = WebLimits(subscribe_per_client="3/minute", posts_per_client="1000/minute")
    async with harness(app, smtp_server, limits=limits) as web:
        statuses = []
        for n in range(5):
            # A new address of the same /64 each time: what an attacker with a /64 does.
            async with web.client(ip=f"2001:db8:77:1:{n + 1:x}::{n + 7:x}") as client:
                got = await client.post(
                    "/subscribe", json={"email": f"v{n}@example.org"}, headers=JSON
                )
                statuses.append(got.status_code)
        async with web.client(ip="2001:db8:77:2::1") as other:
            neighbour = await other.post("/subscribe", json={"email": "n@example.org"})
    assert statuses == [202, 202, 202, 429, 429]
    assert neighbour.status_code == 202
