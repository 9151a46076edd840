"""`POST /subscribe` (form or JSON, double opt-in); the form itself is on `GET /` (public.py)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from digestd.core.statuses import ConsentVia
from digestd.subscribers import signup
from digestd.subscribers.preferences import Preferences
from digestd.web import flows, forms
from digestd.web.csrf import FORM_TOKEN_FIELD, form_token_valid, same_origin
from digestd.web.jsonbody import InvalidJson, read_json
from digestd.web.responses import error, read_form, render, state
from digestd.web.state import WebState

router = APIRouter()
log = logging.getLogger(__name__)

ACCEPTED_MESSAGE = (
    "Thanks! If this address can receive mail, a message with a confirmation link is on its "
    "way. Nothing will be sent until you click it."
)
FORM_CONTENT_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

_SUBSCRIBE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["email"],
    "additionalProperties": False,
    "properties": {
        "email": {"type": "string", "format": "email", "maxLength": 320},
        "name": {"type": "string", "maxLength": 200},
        "topics": {"type": "string", "maxLength": 1000, "description": "keywords, free text"},
        "categories": {
            "type": "array",
            "items": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9._-]{0,63}$"},
            "maxItems": 50,
        },
        "frequency": {"type": "string", "enum": ["daily", "weekly"]},
        "send_hour": {"type": "integer", "minimum": 0, "maximum": 23},
        "send_weekday": {"type": "integer", "minimum": 0, "maximum": 6},
        "timezone": {"type": "string", "description": "IANA name, e.g. Europe/Berlin"},
        "max_items": {"type": "integer", "minimum": 1, "maximum": 100},
        "format": {"type": "string", "enum": ["html", "text"]},
    },
}
_FORM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["email", FORM_TOKEN_FIELD],
    "properties": {
        **{k: v for k, v in _SUBSCRIBE_SCHEMA["properties"].items() if k != "categories"},
        "categories": {"type": "array", "items": {"type": "string"}},
        "other_categories": {"type": "string"},
        FORM_TOKEN_FIELD: {"type": "string"},
    },
}
_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "fields": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["error"],
}
_ERROR = {"content": {"application/json": {"schema": _ERROR_SCHEMA}}}


def _form_page(
    request: Request,
    status: int = 200,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    return render(
        request,
        "subscribe.html",
        status,
        values=values or {},
        errors=errors or {},
        categories=forms.COMMON_CATEGORIES,
        timezones=forms.COMMON_TIMEZONES,
        weekdays=forms.WEEKDAY_NAMES,
    )


@router.post(
    "/subscribe",
    summary="Subscribe (double opt-in)",
    status_code=202,
    response_class=Response,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _SUBSCRIBE_SCHEMA},
                "application/x-www-form-urlencoded": {"schema": _FORM_SCHEMA},
            },
        },
        "responses": {
            "202": {
                "description": "Accepted; the same answer whether or not the address was known",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            **{
                code: {"description": text, **_ERROR}
                for code, text in (
                    ("400", "Malformed body"),
                    ("403", "Cross-site post or expired form"),
                    ("413", "Body too large"),
                    ("415", "Unsupported content type"),
                    ("422", "Invalid fields, one message each"),
                    ("429", "Too many sign-ups from this client"),
                )
            },
        },
    },
)
async def subscribe(request: Request, background: BackgroundTasks) -> Response:
    """Validate, record a pending subscriber, mail the confirmation link; never tells if known."""
    web = state(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    is_json = content_type == "application/json" or content_type.endswith("+json")
    if not is_json and content_type not in FORM_CONTENT_TYPES:
        return error(request, 415, "Send the form, or JSON with Content-Type: application/json.")
    if not same_origin(request, web.ctx.settings.base_url):
        return error(request, 403, "This form was sent from another site and was refused.")
    client = request.client.host if request.client else "unknown"
    wait = web.limiter.hit("subscribe", client)
    if wait is not None:
        return error(
            request,
            429,
            f"Too many sign-ups from your network. Please try again in {_minutes(wait)}.",
            headers={"Retry-After": str(wait)},
        )

    if is_json:
        try:
            body = read_json(await request.body())
        except InvalidJson as exc:
            return error(request, 400, str(exc))
        data, type_errors = forms.check_json(body, forms.SUBSCRIBE_FIELDS)
    else:
        form = await read_form(request)
        data, type_errors = forms.from_form(form), {}
        token = form.get(FORM_TOKEN_FIELD)
        if not form_token_valid(web.ctx.secret_key, "subscribe", token, web.ctx.now().timestamp()):
            message = "This form had expired. Please check your details and send it again."
            return _form_page(request, 403, values=data, errors={"form": message})

    parsed = forms.validate(
        data, need_email=True, errors=type_errors, smtputf8=web.ctx.settings.smtp_smtputf8
    )
    if not parsed.ok:
        if is_json:
            first = next(iter(parsed.errors.values()))
            return error(request, 422, first, fields=parsed.errors)
        return _form_page(request, 422, values=parsed.values, errors=parsed.errors)

    assert parsed.prefs is not None
    # Everything about the address happens after the answer is out, the same way whatever
    # its state (new, pending, active, suppressed, over its daily mails): the answer's
    # timing cannot tell a known address from an unknown one.
    background.add_task(_sign_up, web, parsed.email, parsed.prefs, client)
    if is_json:
        return JSONResponse({"status": "accepted", "message": ACCEPTED_MESSAGE}, status_code=202)
    return render(request, "check_inbox.html", message=ACCEPTED_MESSAGE)


async def _sign_up(web: WebState, email: str, prefs: Preferences, client: str) -> None:
    try:
        mail = await run_in_threadpool(
            signup.request_subscription,
            web.ctx,
            email,
            prefs,
            via=ConsentVia.WEB,
            actor=flows.ACTOR,
            ip=client if client != "unknown" else None,
            source="web form",
            mails_per_day=web.limits.mails_per_email_per_day,
        )
    except Exception:  # the person already has their answer; the log says what went wrong
        log.exception("sign-up could not be recorded")
        return
    if mail is not None and not await web.sender.send(mail):
        await run_in_threadpool(
            signup.confirmation_failed, web.ctx, mail.subscriber_id, actor=flows.ACTOR
        )


def _minutes(seconds: int) -> str:
    minutes = max(1, round(seconds / 60))
    return "1 minute" if minutes == 1 else f"{minutes} minutes"
