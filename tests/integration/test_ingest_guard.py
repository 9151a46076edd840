"""Feeds from anywhere may not reach this machine or its network: checked when a source is
added, and at every connection (the first request and each redirect) on the address the
connection is really opened to.

The feed servers of the tests run on 127.0.0.1, a private address by definition. To stand
for a feed on the internet, a test tells the guard that one server (127.0.0.1 at its port)
counts as public: `policy=` replaces the public-only rule for that one address and port and
leaves it in force for everything else. Names are resolved by an injected resolver where a
test needs a name that resolves to a private address (the mock of the internet's DNS).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from typing import Any

import pytest

from digestd.core.db import session_scope
from digestd.core.netaddr import IPAddress, is_public
from digestd.ingest.fetch import FetchError, fetch, make_client
from digestd.ingest.run import fetch_sources
from digestd.ingest.sources import InvalidSource, add_source, set_allow_private
from tests.support.feeds import FeedServer, Reply, feed_server, fixture_bytes, ingest_context
from tests.support.subscribers import make_invoke

HF_JSON = "hf-daily-papers/api/daily_papers_2026-07-31_pretty.json"
METADATA = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"


@pytest.fixture
def public() -> Iterator[FeedServer]:
    """The feed server that stands for a public site."""
    with feed_server() as srv:
        yield srv


@pytest.fixture
def internal() -> Iterator[FeedServer]:
    """A service of this machine that no public feed may reach."""
    with feed_server() as srv:
        yield srv


@pytest.fixture
def ctx(sqlite_url: str, clock: Any) -> Iterator[Any]:
    with ingest_context(sqlite_url, clock) as app:
        yield app


def port_of(server: FeedServer) -> int:
    return int(server.base.rsplit(":", 1)[1])


def treat_as_public(server: FeedServer) -> Any:
    port = port_of(server)

    def policy(address: IPAddress, at: int) -> bool:
        return (address == ipaddress.ip_address("127.0.0.1") and at == port) or is_public(address)

    return policy


async def get(ctx: Any, url: str, **guard: Any) -> Any:
    async with make_client(ctx.settings, **guard) as client:
        return await fetch(client, url, settings=ctx.settings)


@pytest.mark.parametrize(
    "target",
    [
        "internal",
        METADATA,
        "http://localhost:{port}/secret",
        "http://[::ffff:127.0.0.1]:{port}/secret",
        "http://2130706433:{port}/secret",
        "file:///etc/passwd",
    ],
)
async def test_a_redirect_from_a_public_feed_to_a_private_address_is_refused(
    ctx: Any, public: FeedServer, internal: FeedServer, target: str
) -> None:
    internal.serve("/secret", Reply(body=b"root:x:0:0"))
    if target == "internal":
        target = internal.url("/secret")
    public.serve("/feed", Reply(redirect_to=target.format(port=port_of(internal))))
    with pytest.raises(FetchError, match=r"^refused:"):
        await get(ctx, public.url("/feed"), policy=treat_as_public(public))
    assert internal.hits("/secret") == []
    assert len(public.hits("/feed")) == 1


async def test_redirects_within_public_sites_still_work(ctx: Any, public: FeedServer) -> None:
    public.serve("/old", Reply(redirect_to="/new"))
    public.serve("/new", Reply(body=fixture_bytes(HF_JSON), content_type="application/json"))
    got = await get(ctx, public.url("/old"), policy=treat_as_public(public))
    assert got.status == 200 and got.body == fixture_bytes(HF_JSON)


async def test_a_name_that_resolves_to_a_private_address_is_refused_at_connect_time(
    ctx: Any, internal: FeedServer
) -> None:
    # Nothing in the name says "private": only the address it resolves to (DNS rebinding
    # makes this change between an early check and the connection; we check at connect).
    internal.serve("/feed", Reply(body=fixture_bytes(HF_JSON)))
    resolved: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        resolved.append(host)
        return ["127.0.0.1"] if host == "feeds.example.com" else []

    url = f"http://feeds.example.com:{port_of(internal)}/feed"
    with pytest.raises(FetchError, match=r"refused: feeds\.example\.com \(127\.0\.0\.1\)"):
        await get(ctx, url, resolve=resolver)
    assert resolved == ["feeds.example.com"] and internal.hits("/feed") == []
    # With the source's permission the same name connects to the address it resolved to.
    got = await get(ctx, url, resolve=resolver, allow_private=True)
    assert got.status == 200


@pytest.mark.parametrize(
    "location",
    [
        METADATA,
        "http://127.0.0.1:8080/feed.xml",
        "http://2130706433/feed",
        "http://0x7f.1/feed",
        "http://[::1]/feed",
        "http://[::ffff:10.0.0.1]/feed",
        "http://localhost:8000/feed",
        "http://api.localhost/feed",
        "http://10.1.2.3/feed",
        "file:///etc/passwd",
    ],
)
def test_sources_add_refuses_private_places_unless_allowed(ctx: Any, location: str) -> None:
    with (
        session_scope(ctx.engine) as session,
        pytest.raises(InvalidSource, match="--allow-private"),
    ):
        add_source(session, location, now=ctx.now())
    with session_scope(ctx.engine) as session:
        source = add_source(session, location, now=ctx.now(), allow_private=True)
        assert source.allow_private


def test_public_urls_and_local_paths_are_added_as_before(ctx: Any, tmp_path: Any) -> None:
    feed = tmp_path / "seeds.json"
    feed.write_bytes(fixture_bytes(HF_JSON))
    with session_scope(ctx.engine) as session:
        web = add_source(session, "https://rss.arxiv.org/rss/cs.CL", now=ctx.now())
        local = add_source(session, str(feed), now=ctx.now())
        assert (web.allow_private, local.allow_private) == (False, True)
        assert local.url == feed.as_uri()


async def test_the_daemons_fetch_refuses_a_private_source_until_it_is_allowed(
    ctx: Any, internal: FeedServer
) -> None:
    url = internal.serve("/feed", Reply(body=fixture_bytes(HF_JSON)))
    with session_scope(ctx.engine) as session:
        source_id = add_source(session, url, now=ctx.now(), allow_private=True).id or 0
        set_allow_private(session, source_id, False)  # as after an upgrade: public only
    [report] = await fetch_sources(ctx)
    assert report.status == "error" and report.error is not None
    assert report.error.startswith("refused: 127.0.0.1 is not a public address")
    assert internal.hits("/feed") == []
    with session_scope(ctx.engine) as session:
        set_allow_private(session, source_id, True)
    [report] = await fetch_sources(ctx)
    assert report.status == "ok" and report.new > 0


def test_the_cli_states_what_a_source_may_reach(sqlite_url: str, tmp_path: Any) -> None:
    invoke = make_invoke(sqlite_url)
    refused = invoke("sources", "add", METADATA)
    assert refused.exit_code == 1
    assert "169.254.169.254, a private or local address" in refused.output
    assert "--allow-private" in refused.output
    assert invoke("sources", "add", "file:///etc/passwd").exit_code == 1
    allowed = invoke("sources", "add", "http://10.0.0.5/feed.xml", "--allow-private")
    assert allowed.exit_code == 0
    # Messages wrap between words at 80 columns: compare the words, not the line breaks.
    assert "may reach this machine and private networks" in " ".join(allowed.output.split())
    public = invoke("sources", "add", "https://rss.arxiv.org/rss/cs.LG")
    assert "public addresses only" in " ".join(public.output.split())
    feed = tmp_path / "f.json"
    feed.write_bytes(b"{}")
    local = invoke("sources", "add", str(feed)).output
    assert "a local file on this machine" in " ".join(local.split())
    changed = invoke("sources", "set", "1", "--public-only")
    assert changed.exit_code == 0 and "public addresses only" in " ".join(changed.output.split())
    listed = invoke("sources", "list", "--json")
    assert [s["allow_private"] for s in json.loads(listed.stdout)] == [False, False, True]
