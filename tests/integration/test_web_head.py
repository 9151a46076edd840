"""HEAD is answered wherever GET is (uptime checkers use it), with GET's status and headers
and no body; neither a HEAD nor a GET on a confirmation link confirms (issues 27, 26)."""

from __future__ import annotations

from tests.integration.test_web_links import make, status_of
from tests.support.web import WebHarness, link_for
from tests.support.web import web_fixture as web_fixture  # the `web` fixture


async def test_head_answers_like_get_without_a_body(web: WebHarness) -> None:
    async with web.client() as client:
        for path in ("/", "/healthz", "/archive", "/feed.xml", "/nothing-here"):
            got = await client.get(path)
            head = await client.head(path)
            assert head.status_code == got.status_code, path
            assert head.content == b"", path
            assert head.headers["content-type"] == got.headers["content-type"], path
            assert "content-security-policy" in head.headers, path
        # A POST-only route still refuses it.
        assert (await client.head("/subscribe")).status_code == 405


async def test_a_head_or_get_on_a_confirmation_link_confirms_nothing(web: WebHarness) -> None:
    sub = make(web, status="pending")
    path = link_for(web.ctx, "confirm", sub)
    async with web.client() as client:
        head = await client.head(path)
        got = await client.get(path)
        assert head.status_code == got.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == got.headers["content-length"]
        assert "Confirm my subscription" in got.text
        assert status_of(web) == "pending"  # a link scanner's HEAD and GET subscribe no one
        assert (await web.press_confirm(client, path)).status_code == 200
    assert status_of(web) == "active"
