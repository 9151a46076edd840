"""Health, security headers, body caps, and the OpenAPI description fuzzed with schemathesis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from digestd.core import tokens
from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.subscribers.preferences import Preferences
from digestd.web import create_app
from digestd.web.csrf import make_form_token
from digestd.web.middleware import CSP
from tests.support.smtp import SmtpTestServer
from tests.support.subscribers import add_subscriber, get_by_email
from tests.support.web import (
    BASE_URL,
    GENEROUS,
    WebHarness,
    web_context,
    web_fixture,  # noqa: F401  (the `web` fixture)
)


async def test_health_reports_database_and_no_scheduler_when_alone(web: WebHarness) -> None:
    async with web.client() as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "scheduler": "not running"}


async def test_health_reports_the_daemons_scheduler(web: WebHarness) -> None:
    alive = {"value": True}
    web.app.state.scheduler_heartbeat = lambda: alive["value"]
    async with web.client() as client:
        up = await client.get("/healthz")
        alive["value"] = False
        down = await client.get("/healthz")
    assert (up.status_code, up.json()["scheduler"]) == (200, "alive")
    assert (down.status_code, down.json()["scheduler"]) == (503, "stopped")


async def test_health_is_503_when_the_database_is_unreachable(
    tmp_path, smtp_server: SmtpTestServer
) -> None:
    # Nothing listens on port 1: a database that is down (connection refused at once).
    settings = Settings(
        database_url="postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2",
        secret_key="test-secret-key-0123456789",
    )
    app = create_app(AppContext(settings=settings))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        response = await client.get("/healthz")
        page = await client.get("/")  # pages that need no database still render
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy" and body["database"].startswith("unreachable")
    assert "\n" not in body["database"]
    assert page.status_code == 200


async def test_security_headers_on_pages_errors_and_static(web: WebHarness) -> None:
    async with web.client() as client:
        responses = [
            await client.get("/"),
            await client.get("/confirm/bad"),
            await client.get("/healthz"),
            await client.get("/static/site.css"),
        ]
    for response in responses:
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
        assert response.headers["x-frame-options"] == "DENY"
    assert "'unsafe-inline'" not in CSP and "frame-ancestors 'none'" in CSP
    # The public home page may be cached but is revalidated; pages behind links never are.
    assert responses[0].headers["cache-control"] == "public, no-cache"
    assert responses[1].headers["cache-control"] == "no-store"
    assert responses[3].headers["content-type"].startswith("text/css")
    assert "strict-transport-security" not in responses[0].headers  # http base URL


async def test_pages_use_no_inline_script_or_style(web: WebHarness) -> None:
    async with web.client() as client:
        page = (await client.get("/")).text
    assert '<html lang="en">' in page
    assert "<script>" not in page and "style=" not in page and "<style" not in page
    assert '<script src="/static/tz.js"></script>' in page


@pytest.mark.parametrize("chunked", [False, True])
async def test_oversized_bodies_are_refused_with_413(web: WebHarness, chunked: bool) -> None:
    big = b'{"email": "' + b"a" * 100_000 + b'@example.org"}'

    async def stream() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    async with web.client() as client:
        response = await client.post(
            "/subscribe",
            content=stream() if chunked else big,
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 413
    assert "larger than 64 KiB" in response.json()["error"]


async def test_oversized_form_gets_a_page_not_a_crash(web: WebHarness) -> None:
    fields = {"csrf_token": web.form_token("subscribe"), "topics": "x" * 70_000}
    async with web.client() as client:
        response = await client.post("/subscribe", data=fields)
    assert response.status_code == 413 and "Too much data" in response.text


@pytest.mark.parametrize("path", ["/subscribe", "/preferences/x", "/unsubscribe/x"])
async def test_a_broken_multipart_body_is_one_clear_400(web: WebHarness, path: str) -> None:
    async with web.client() as client:
        response = await client.post(
            path,
            content=b"topics=x",
            headers={"Content-Type": "multipart/form-data"},  # no boundary: unreadable
        )
    assert response.status_code == 400
    assert "The form data could not be read." in response.text


# ---- schemathesis ------------------------------------------------------------------------


@pytest.fixture
def fuzz_app(sqlite_url: str, smtp_server: SmtpTestServer) -> Iterator[tuple[AppContext, object]]:
    base = AppContext(Settings(database_url=sqlite_url, secret_key="fuzz-secret-key-0123456789"))
    base.migrate()
    ctx = web_context(base, smtp_server, "http://localhost")
    yield ctx, create_app(ctx, limits=GENEROUS)
    base.dispose()


def _ensure_subscriber(ctx: AppContext) -> object:
    with session_scope(ctx.engine) as session:
        sub = get_by_email(session, "fuzz@example.org")
        if sub is None:
            sub = add_subscriber(
                session,
                "fuzz@example.org",
                Preferences(),
                status="active",
                actor="t",
                now=ctx.now(),
            )
        return sub


# Every documented operation, each fuzzed by a test of its own (so that the operations share
# out over the test workers). An operation added to the app fails the first test below
# until it is listed here, and is then fuzzed like the others.
OPERATIONS = (
    "GET /",
    "GET /archive/{day}",
    "GET /archive",
    "GET /feed.xml",
    "GET /feed.json",
    "POST /subscribe",
    "GET /view/{token}/{period}",
    "GET /confirm/{token}",
    "POST /confirm/{token}",
    "GET /unsubscribe/{token}",
    "POST /unsubscribe/{token}",
    "GET /preferences/{token}",
    "POST /preferences/{token}",
    "POST /preferences/{token}/library",
    "GET /healthz",
    "GET /vote/{token}/{entry_id}/{direction}/{mac}",
    "POST /vote/{token}/{entry_id}/{direction}/{mac}",
)
# The fuzzing reaches real outcomes, not only refusals.
REACHED = {
    "POST /subscribe": {202, 422},
    "POST /unsubscribe/{token}": {200},
    "GET /preferences/{token}": {200},
}


def test_openapi_describes_every_fuzzed_operation(fuzz_app) -> None:
    _ctx, app = fuzz_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    labels = [result.ok().label for result in schema.get_all_operations()]
    assert sorted(labels) == sorted(OPERATIONS), "list a new operation in OPERATIONS"


@pytest.mark.slow
@pytest.mark.parametrize("label", OPERATIONS)
def test_openapi_fuzz_never_gets_a_server_error(fuzz_app, label: str) -> None:
    """The operation, positive and negative data, half of the cases with a valid signed
    token and form token so the fuzzed bodies reach the real handlers."""
    ctx, app = fuzz_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    [op] = [r.ok() for r in schema.get_all_operations() if r.ok().label == label]
    seen: set[int] = set()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @given(case=op.as_strategy(generation_mode=mode), valid=st.booleans())
        @settings(
            max_examples=30,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case, valid: bool) -> None:
            if valid and "token" in (case.path_parameters or {}):
                sub = _ensure_subscriber(ctx)
                purpose = case.operation.path.split("/")[1]
                case.path_parameters["token"] = tokens.subscriber_token(
                    ctx.secret_key, purpose, sub
                )
                if isinstance(case.body, dict):
                    form = "preferences" if purpose == "preferences" else "subscribe"
                    case.body["csrf_token"] = make_form_token(ctx.secret_key, form)
            response = case.call()
            seen.add(response.status_code)
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} -> {response.status_code}: "
                f"{response.text[:300]}"
            )

        try:
            check()
        except Unsatisfiable:
            # No invalid input exists for an operation without parameters (GET /).
            assert mode is GenerationMode.NEGATIVE
    assert REACHED.get(label, set()) <= seen, seen
