"""`create_app(ctx)`: the subscription web as a FastAPI app (no globals; state on app.state)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from jinja2 import TemplateNotFound
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from digestd import __version__
from digestd.core.context import AppContext
from digestd.mail.templating import make_environment
from digestd.subscribers.optin import ConfirmationSender
from digestd.web import (
    digest_view,
    health,
    library_upload,
    metrics,
    pages,
    public,
    subscribe,
    votes,
    webhooks,
)
from digestd.web.links import LinkError
from digestd.web.middleware import (
    MAX_BODY_BYTES,
    BodySizeLimit,
    CanonicalRedirects,
    HeadAsGet,
    SecurityHeaders,
)
from digestd.web.ratelimit import ClientLimiter, WebLimits
from digestd.web.responses import error
from digestd.web.state import SchedulerHeartbeat, WebState

log = logging.getLogger(__name__)

# The only static files; read through the template loader so DIGESTD_TEMPLATES_DIR can
# override them like any template.
STATIC_FILES = {"site.css": "text/css; charset=utf-8", "tz.js": "text/javascript; charset=utf-8"}


def create_app(
    ctx: AppContext,
    *,
    limits: WebLimits | None = None,
    scheduler_heartbeat: SchedulerHeartbeat | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The ASGI app for this context; nothing touches the database until a request does."""
    env = make_environment(ctx.settings)
    web_limits = limits or WebLimits()
    sender = ConfirmationSender(env, ctx.settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            # Read (or create, first run) the secret key now, off the loop, rather than
            # inside the first page render.
            await run_in_threadpool(lambda: ctx.secret_key)
        except Exception as exc:  # the database may be down at start; /healthz will say so
            log.warning("secret key not loaded at start: %s", exc)
        yield
        await sender.close()

    app = FastAPI(
        title="digestd subscription web",
        version=__version__,
        description="Subscribe (double opt-in), confirm, change preferences, unsubscribe.",
        docs_url=None,  # the interactive docs load scripts from a CDN, which the CSP forbids
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.web = WebState(
        ctx=ctx,
        env=env,
        limits=web_limits,
        limiter=ClientLimiter(web_limits),
        sender=sender,
    )
    # The daemon may set or replace this after creating the app.
    app.state.scheduler_heartbeat = scheduler_heartbeat

    app.include_router(public.router)
    app.include_router(subscribe.router)
    app.include_router(digest_view.router)
    app.include_router(pages.router)
    app.include_router(library_upload.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    metrics.watch_database(ctx)
    app.include_router(votes.router)
    app.include_router(webhooks.router)

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in STATIC_FILES:
            raise HTTPException(404, "No such file.")
        try:
            assert env.loader is not None  # templating always sets one
            source, _, _ = env.loader.get_source(env, f"web/static/{name}")
        except TemplateNotFound:
            raise HTTPException(404, "No such file.") from None
        return Response(
            source,
            media_type=STATIC_FILES[name],
            headers={"Cache-Control": "public, max-age=3600"},
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        message = str(exc.detail) if exc.detail else "This did not work."
        if exc.status_code == 404 and message == "Not Found":
            message = "There is no page at this address."
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed here."
        headers = dict(exc.headers) if exc.headers else None
        return error(request, exc.status_code, _sentence(message), headers=headers)

    @app.exception_handler(LinkError)
    async def link_error(request: Request, exc: LinkError) -> Response:
        # A signed link that cannot be used (tampered, expired, revoked, gone), from any route.
        return error(request, exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
        return error(request, 422, f"{where}: {first.get('msg', 'is not valid')}")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # The route's template, not the path: paths carry signed tokens.
        route = getattr(request.scope.get("route"), "path", "?")
        log.exception("unexpected error on %s %s", request.method, route)
        return error(request, 500, "Something went wrong on our side. Please try again later.")

    app.add_middleware(HeadAsGet)  # innermost: its answers get the headers of any other
    app.add_middleware(BodySizeLimit, limit=max_body_bytes)
    app.add_middleware(CanonicalRedirects, base_url=ctx.settings.base_url)
    app.add_middleware(SecurityHeaders, https=ctx.settings.base_url.startswith("https://"))
    app.add_middleware(metrics.RequestCounter, metrics=ctx.metrics)  # outermost: sees every status
    return app


def _sentence(message: str) -> str:
    message = message.strip()
    message = message[:1].upper() + message[1:]
    return message if message.endswith((".", "!", "?")) else message + "."
