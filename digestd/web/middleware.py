"""ASGI middleware: security headers on every response, a cap on request body size,
redirects that always point at DIGESTD_BASE_URL, and HEAD answered wherever GET is."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Nothing inline, nothing from elsewhere: the one script and stylesheet are served by us.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
MAX_BODY_BYTES = 64 * 1024
# Provider webhooks (web/webhooks.py) post batches of events: up to 1 MB there.
WEBHOOK_PREFIX, WEBHOOK_MAX_BODY_BYTES = "/webhooks/", 1024 * 1024
# A reader's library file (web/library_upload.py): the file's own cap (library_file.MAX_BYTES,
# 5 MB) plus the form around it.
LIBRARY_PREFIX, LIBRARY_SUFFIX = "/preferences/", "/library"
LIBRARY_MAX_BODY_BYTES = 5 * 1024 * 1024 + 64 * 1024


class HeadAsGet:
    """HEAD is answered wherever GET is (uptime checkers use it; FastAPI routes take only the
    methods they name): the GET route runs on a copy of the request's scope, and only the
    status and headers (Content-Length included) go out, never the body (RFC 9110 9.3.2).
    GET routes change nothing (a confirmation link shows a button; its POST confirms)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # the rest follows; only the last (empty) part is passed on
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        # A copy: the server keeps reading the real scope (method HEAD: no body on the wire).
        await self.app({**scope, "method": "GET"}, receive, headers_only)


class BodyTooLarge(HTTPException):
    """413, raised while the body is read; rendered like any other HTTP error."""

    def __init__(self, limit: int, message: str | None = None) -> None:
        super().__init__(413, message or f"request body is larger than {limit // 1024} KiB")


class SecurityHeaders:
    """Adds CSP, no-sniff, referrer (links carry tokens), framing and caching headers."""

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        self.headers: list[tuple[bytes, bytes]] = [
            (b"content-security-policy", CSP.encode()),
            (b"x-content-type-options", b"nosniff"),
            # Not "no-referrer": with it Chromium sends `Origin: null` on our own form posts,
            # which the cross-site check must refuse. Same-origin keeps tokens on this site.
            (b"referrer-policy", b"same-origin"),
            (b"x-frame-options", b"DENY"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"cross-origin-resource-policy", b"same-origin"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
        ]
        if https:
            self.headers.append((b"strict-transport-security", b"max-age=31536000"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in self.headers if h[0] not in present)
                if b"cache-control" not in present and not path.startswith("/static/"):
                    # Pages behind signed links are personal: never keep them in a cache.
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodySizeLimit:
    """Refuses bodies over `limit` bytes: by Content-Length up front, else while streaming."""

    def __init__(self, app: ASGIApp, *, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, too_large = self.limit, None
        path = str(scope.get("path", ""))
        if path.startswith(WEBHOOK_PREFIX):
            limit = max(limit, WEBHOOK_MAX_BODY_BYTES)
        elif path.startswith(LIBRARY_PREFIX) and path.endswith(LIBRARY_SUFFIX):
            limit = max(limit, LIBRARY_MAX_BODY_BYTES)
            too_large = "the library file is larger than 5 MB (export a collection instead)"
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    # Do not read it at all; the route's error handler renders the 413.
                    receive = _refusing_receive(limit, too_large)
                break
        seen = 0
        inner = receive

        async def counting_receive() -> Message:
            nonlocal seen
            message = await inner()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit, too_large)
            return message

        await self.app(scope, counting_receive, send)


def _refusing_receive(limit: int, message: str | None = None) -> Receive:
    async def receive() -> Message:
        raise BodyTooLarge(limit, message)

    return receive


class CanonicalRedirects:
    """Every redirect points at `base_url` (DIGESTD_BASE_URL), never at the request's Host.

    Starlette builds the Location of its redirects (`/archive/` → `/archive`) from the
    request's Host header, which the client chooses: `Host: evil.example` made us send
    visitors there. The app never redirects off-site, so any Location that is not already
    on `base_url` keeps its path and query, put on `base_url`.
    """

    def __init__(self, app: ASGIApp, *, base_url: str) -> None:
        self.app = app
        self.base_url = base_url.rstrip("/")
        self.origin = self.base_url.encode("latin-1") + b"/"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_canonical(message: Message) -> None:
            if message["type"] == "http.response.start" and 300 <= message["status"] < 400:
                message["headers"] = [
                    (name, self._canonical(value) if name.lower() == b"location" else value)
                    for name, value in message.get("headers", [])
                ]
            await send(message)

        await self.app(scope, receive, send_canonical)

    def _canonical(self, location: bytes) -> bytes:
        if location.startswith(self.origin):
            return location
        parts = urlsplit(location.decode("latin-1"))
        path = "/" + parts.path.lstrip("/") if parts.path else ""
        query = f"?{parts.query}" if parts.query else ""
        return (self.base_url + path + query).encode("latin-1")
