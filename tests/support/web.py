"""Helpers for the subscription web tests: a real uvicorn in a thread, mail links, clients."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import col, select

from digestd.core import tokens
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Event, Subscriber
from digestd.web import create_app
from digestd.web.csrf import make_form_token
from digestd.web.ratelimit import WebLimits
from digestd.web.server import bind, serve
from tests.support.smtp import Received, SmtpTestServer
from tests.support.subscribers import get_by_email

URL_RE = re.compile(r"https?://[^\s<>\"']+")


def web_context(ctx: AppContext, smtp: SmtpTestServer, base_url: str) -> AppContext:
    """A copy of `ctx` whose links point at `base_url` and whose mail goes to `smtp`."""
    settings = replace(
        ctx.settings,
        base_url=base_url,
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        smtp_tls="none",
        from_address="Paper Digest <digest@example.org>",
    )
    web = AppContext(settings=settings, clock=ctx.clock, actor="web")
    # Share the migrated engine (and its SQLite file) with the test's own context.
    web.__dict__["engine"] = ctx.engine
    return web


@dataclass
class RunningWeb:
    base_url: str
    ctx: AppContext


@contextmanager
def running_web(ctx: AppContext, smtp: SmtpTestServer) -> Iterator[RunningWeb]:
    """uvicorn serving the app on 127.0.0.1 (a port the OS picks) in its own thread."""
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    web = web_context(ctx, smtp, base_url)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    started = threading.Event()
    failure: list[BaseException] = []

    async def main() -> None:
        up = asyncio.Event()
        task = asyncio.create_task(serve(web, stop_event=stop, sock=sock, started=up))
        waiter = asyncio.create_task(up.wait())
        await asyncio.wait({task, waiter}, return_when="FIRST_COMPLETED")
        started.set()
        waiter.cancel()
        await task

    def run() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as exc:
            failure.append(exc)
            started.set()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="uvicorn-test", daemon=True)
    thread.start()
    assert started.wait(20), "web server did not start within 20 s"
    if failure:
        raise failure[0]
    try:
        yield RunningWeb(base_url=base_url, ctx=web)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(20)
        assert not thread.is_alive(), "web server did not stop within 20 s"


def wait_for_messages(smtp: SmtpTestServer, count: int, timeout: float = 10.0) -> list[Received]:
    """Wait (bounded, on the real server's state) until `count` messages have arrived."""
    done = threading.Event()
    deadline_checks = int(timeout / 0.05)
    for _ in range(deadline_checks):
        if len(smtp.messages) >= count:
            return smtp.messages
        done.wait(0.05)
    raise AssertionError(f"expected {count} messages, got {len(smtp.messages)}")


def text_part(received: Received) -> str:
    """The plain-text body of a received message."""
    body = received.message.get_body(preferencelist=("plain",))
    assert body is not None, "message has no text/plain part"
    return str(body.get_content())


def html_part(received: Received) -> str:
    """The HTML body of a received message."""
    body = received.message.get_body(preferencelist=("html",))
    assert body is not None, "message has no text/html part"
    return str(body.get_content())


def link_in(received: Received, purpose: str) -> str:
    """The first signed link for `purpose` (confirm, preferences, unsubscribe) in the text part."""
    for url in URL_RE.findall(text_part(received)):
        if f"/{purpose}/" in url:
            return url
    raise AssertionError(f"no /{purpose}/ link in the message")


# ---- in-process app (httpx over ASGI) for tests where a real socket adds nothing ----------

BASE_URL = "http://digest.test"
GENEROUS = WebLimits(subscribe_per_client="1000/minute", posts_per_client="1000/minute")


@dataclass
class WebHarness:
    """The app on a migrated database with a real SMTP server; `client()` talks ASGI to it."""

    app: FastAPI
    ctx: AppContext
    smtp: SmtpTestServer

    def client(self, ip: str = "198.51.100.7") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(ip, 40000))
        return httpx.AsyncClient(transport=transport, base_url=BASE_URL, follow_redirects=False)

    def form_token(self, form: str) -> str:
        return make_form_token(self.ctx.secret_key, form)

    async def press_confirm(self, client: httpx.AsyncClient, path: str) -> httpx.Response:
        """What a browser sends on the confirmation page's button (GET only shows it)."""
        path = path.removeprefix(BASE_URL)
        data = {"csrf_token": self.form_token("confirm")}
        headers = {"Origin": BASE_URL, "Sec-Fetch-Site": "same-origin"}
        return await client.post(path, data=data, headers=headers)

    async def close(self) -> None:
        await self.app.state.web.sender.close()


@asynccontextmanager
async def harness(
    ctx: AppContext, smtp: SmtpTestServer, limits: WebLimits = GENEROUS
) -> AsyncIterator[WebHarness]:
    """A WebHarness whose mails go to `smtp`; closes its SMTP connections afterwards."""
    web = web_context(ctx, smtp, BASE_URL)
    h = WebHarness(app=create_app(web, limits=limits), ctx=web, smtp=smtp)
    try:
        yield h
    finally:
        await h.close()


@pytest.fixture(name="web")
async def web_fixture(app: AppContext, smtp_server: SmtpTestServer) -> AsyncIterator[WebHarness]:
    """The subscription web on the test database (SQLite and PostgreSQL), generous limits."""
    async with harness(app, smtp_server) as h:
        yield h


def subscriber(ctx: AppContext, email: str) -> Subscriber | None:
    """The stored row for an address (fresh session)."""
    with session_scope(ctx.engine) as session:
        return get_by_email(session, email)


def events(ctx: AppContext, action: str) -> list[Event]:
    """Every Event row with this action, oldest first."""
    with session_scope(ctx.engine) as session:
        stmt = select(Event).where(Event.action == action).order_by(col(Event.id))
        return list(session.exec(stmt).all())


def link_for(ctx: AppContext, purpose: str, sub: Subscriber, base_url: str = BASE_URL) -> str:
    """A signed link as an email would carry it (path only, for the ASGI client)."""
    return tokens.subscriber_link(base_url, ctx.secret_key, purpose, sub).removeprefix(base_url)
