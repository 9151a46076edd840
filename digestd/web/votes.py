""" "More / less like this": the page behind a vote link, and the POST that records it.

GET never changes anything (mail scanners and link previews follow every link): it shows
the paper and the vote with one button. POST to the same URL records the vote, from that
button (a same-site form with a form token, see csrf.py) or from a script as
`Content-Type: application/json` with the body `{}` (the one-click style: the signed link
is the authorization, and a cross-site page cannot send JSON without a CORS preflight,
which this app never grants). Voting twice changes nothing; `{"action": "undo"}` (or the
page's Undo button) takes the vote back.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from digestd.web import vote_flows
from digestd.web.csrf import FORM_TOKEN_FIELD, form_token_valid, same_origin
from digestd.web.jsonbody import InvalidJson, read_json
from digestd.web.responses import error, read_form, render, state

router = APIRouter()

PATH = "/vote/{token}/{entry_id}/{direction}/{mac}"
FORM = "vote"
ACTIONS = ("vote", "undo")
MAX_JSON_BYTES = 1024

_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"action": {"type": "string", "enum": list(ACTIONS)}},
                }
            },
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "action": {"type": "string", "enum": list(ACTIONS)},
                        FORM_TOKEN_FIELD: {"type": "string"},
                    },
                }
            },
        },
    }
}


def _direction(direction: str) -> str:
    # An unknown direction is a link that was never issued: the same answer as a bad MAC.
    return direction if direction in ("up", "down") else ""


def _page(request: Request, page: vote_flows.VotePage, path: str, status: int = 200) -> Response:
    return render(request, "vote.html", status, page=page, action_url=path)


def _as_json(page: vote_flows.VotePage) -> dict[str, Any]:
    return {
        "entry_id": page.entry_id,
        "title": page.title,
        "vote": page.current,
        "changed": page.changed,
    }


@router.get(PATH, summary="A vote link's page", response_class=Response)
async def vote_page(
    request: Request, token: str, entry_id: int, direction: str, mac: str
) -> Response:
    """Name the paper and the vote, with one button; records nothing."""
    page = await run_in_threadpool(
        vote_flows.show, state(request).ctx, token, entry_id, _direction(direction), mac
    )
    return _page(request, page, request.url.path)


@router.post(
    PATH,
    summary="Record (or undo) a vote: more / less like this",
    response_class=Response,
    openapi_extra=_BODY,
)
async def vote(request: Request, token: str, entry_id: int, direction: str, mac: str) -> Response:
    """Record the link's vote and answer 200; the same vote twice changes nothing."""
    web = state(request)
    ctx = web.ctx
    wait = web.limiter.hit("post", request.client.host if request.client else "unknown")
    if wait is not None:
        return error(
            request,
            429,
            "Too many requests from your network. Please try again in a minute.",
            headers={"Retry-After": str(wait)},
        )
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    direction = _direction(direction)
    if content_type == "application/json":
        raw = await request.body()
        try:
            body = read_json(raw or b"{}") if len(raw) <= MAX_JSON_BYTES else None
        except InvalidJson:
            body = None
        if not isinstance(body, dict) or body.get("action", "vote") not in ACTIONS:
            return error(request, 400, 'Send the JSON object {} (or {"action": "undo"}).')
        flow = vote_flows.undo if body.get("action") == "undo" else vote_flows.cast
        page = await run_in_threadpool(flow, ctx, token, entry_id, direction, mac)
        return JSONResponse(_as_json(page))
    if content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return error(request, 415, "Send the vote form, or JSON {} from a script.")
    if not same_origin(request, ctx.settings.base_url):
        return error(request, 403, "This form was sent from another site and was refused.")
    form = await read_form(request)
    page = await run_in_threadpool(vote_flows.show, ctx, token, entry_id, direction, mac)
    if not form_token_valid(
        ctx.secret_key, FORM, form.get(FORM_TOKEN_FIELD), ctx.now().timestamp()
    ):
        return render(
            request,
            "vote.html",
            403,
            page=page,
            action_url=request.url.path,
            problem="This page had expired. Please press the button again.",
        )
    action = form.get("action", "vote")
    if action not in ACTIONS:
        return error(request, 400, "Unknown action.")
    flow = vote_flows.undo if action == "undo" else vote_flows.cast
    page = await run_in_threadpool(flow, ctx, token, entry_id, direction, mac)
    return render(request, "vote.html", page=page, action_url=request.url.path, done=action)
