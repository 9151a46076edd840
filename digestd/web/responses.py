"""Rendering pages and errors: HTML for browsers, one-line JSON errors for API clients."""

from __future__ import annotations

from typing import Any

from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request

from digestd.web.csrf import make_form_token
from digestd.web.state import WebState


def state(request: Request) -> WebState:
    """Everything the routes need, set on app.state by `create_app` (no globals)."""
    web: WebState = request.app.state.web
    return web


def wants_json(request: Request) -> bool:
    """JSON for JSON requests and clients that ask for it; HTML for browsers and forms."""
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("application/json") or "+json" in content_type.split(";")[0]:
        return True
    if request.url.path == "/healthz":
        return True
    accept = request.headers.get("accept", "").lower()
    return "application/json" in accept and "text/html" not in accept


async def read_form(request: Request) -> FormData:
    """The posted form; a body that cannot be parsed is a 400 page, a too-large one stays 413."""
    try:
        return await request.form()
    except Exception as exc:  # python-multipart raises several types for broken bodies
        if getattr(exc, "status_code", None) == 413:
            raise
        raise HTTPException(400, "The form data could not be read.") from None


def render_html(request: Request, template: str, **values: Any) -> str:
    """A page from templates/web/, autoescaped, as text."""
    web = state(request)
    values.setdefault("form_token", lambda form: make_form_token(web.ctx.secret_key, form))
    return web.env.get_template(f"web/{template}").render(request_path=request.url.path, **values)


def render(request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    """A page from templates/web/, autoescaped."""
    return HTMLResponse(render_html(request, template, **values), status_code=status)


def error(
    request: Request,
    status: int,
    message: str,
    *,
    fields: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The same one-line message as JSON `{"error", "fields"}` or as a small page."""
    if wants_json(request):
        body: dict[str, Any] = {"error": message}
        if fields:
            body["fields"] = fields
        return JSONResponse(body, status_code=status, headers=headers)
    response = render(request, "message.html", status, title=_title(status), message=message)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _title(status: int) -> str:
    return {
        400: "This did not work",
        403: "Not allowed",
        404: "Page not found",
        405: "Not allowed",
        410: "Link no longer valid",
        413: "Too much data",
        415: "Unsupported format",
        422: "Please check your input",
        429: "Too many attempts",
        503: "Temporarily unavailable",
    }.get(status, "Something went wrong")
