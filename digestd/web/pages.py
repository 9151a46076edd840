"""The pages behind signed links: confirm (a button), unsubscribe (RFC 8058), preference
center. GET never changes anything: mail scanners follow every link."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from digestd.subscribers.preferences import Preferences
from digestd.subscribers.votes import parse_refs
from digestd.web import flows, forms
from digestd.web.csrf import FORM_TOKEN_FIELD, form_token_valid, same_origin
from digestd.web.responses import error, read_form, render, state

router = APIRouter()

_FORM_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "action": {
                            "type": "string",
                            "enum": [
                                "save",
                                "pause",
                                "resume",
                                "forget",
                                "clear_votes",
                                "sign_out",
                            ],
                        },
                        FORM_TOKEN_FIELD: {"type": "string"},
                        "confirm_forget": {"type": "string"},
                        "topics": {"type": "string"},
                        "categories": {"type": "array", "items": {"type": "string"}},
                        "frequency": {"type": "string"},
                        "send_hour": {"type": "string"},
                        "send_weekday": {"type": "string"},
                        "timezone": {"type": "string"},
                        "max_items": {"type": "string"},
                        "format": {"type": "string"},
                        "liked_papers": {"type": "string"},
                        "follows": {"type": "string"},
                        "muted_authors": {"type": "string"},
                    },
                }
            }
        },
    }
}
CONFIRM_FORM = "confirm"
_CONFIRM_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": [FORM_TOKEN_FIELD],
                    "properties": {FORM_TOKEN_FIELD: {"type": "string"}},
                }
            }
        },
    }
}
_ONE_CLICK_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["List-Unsubscribe"],
                    "properties": {"List-Unsubscribe": {"type": "string", "enum": ["One-Click"]}},
                }
            }
        },
    }
}


def prefs_page(
    request: Request,
    page: flows.Page,
    status: int = 200,
    *,
    notice: str = "",
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    offered_authors: tuple[str, ...] = (),
) -> Response:
    """The preference center for a link's subscriber, with a notice or the form's errors
    (and the authors a library import offers to follow)."""
    prefs = Preferences.of(page.sub)
    shown = forms.prefs_values(prefs)
    shown["liked_papers"] = "\n".join(v.paper_id for v in reversed(page.votes) if v.interest)
    shown.update(values or {})
    return render(
        request,
        "preferences.html",
        status,
        sub=page.sub,
        page=page,
        notice=notice,
        values=shown,
        errors=errors or {},
        categories=forms.COMMON_CATEGORIES,
        timezones=forms.COMMON_TIMEZONES,
        weekdays=forms.WEEKDAY_NAMES,
        offered_authors=offered_authors,
    )


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def rate_limited(request: Request) -> Response | None:
    """A 429 page when this network posted too often, else None."""
    wait = state(request).limiter.hit("post", _client(request))
    if wait is None:
        return None
    return error(
        request,
        429,
        "Too many requests from your network. Please try again in a minute.",
        headers={"Retry-After": str(wait)},
    )


def form_refused(request: Request, form_name: str) -> Response | None:
    """Why a page's form POST is refused before it is read (not a form: 415; another site:
    403; this network posted too often: 429), or None: one gate for every form of the pages."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return error(request, 415, f"Send the {form_name}.")
    if not same_origin(request, state(request).ctx.settings.base_url):
        return error(request, 403, "This form was sent from another site and was refused.")
    return rate_limited(request)


@router.get("/confirm/{token}", summary="A confirmation link's page", response_class=Response)
async def confirmation_page(request: Request, token: str) -> Response:
    """A page with one button; GET never confirms (a mail provider's link scanner follows
    every link, and would otherwise subscribe someone)."""
    page = await run_in_threadpool(flows.confirmation_page, state(request).ctx, token)
    return render(request, "confirm.html", page=page, token=token)


@router.post(
    "/confirm/{token}",
    summary="Confirm a subscription",
    response_class=Response,
    openapi_extra=_CONFIRM_BODY,
)
async def confirm(request: Request, token: str) -> Response:
    """Activate the subscriber the confirmation link was sent to (the page's button, a
    same-site form with a form token), then show their preferences."""
    web = state(request)
    refused = form_refused(request, "confirmation form")
    if refused is not None:
        return refused
    form = await read_form(request)
    if not form_token_valid(
        web.ctx.secret_key, CONFIRM_FORM, form.get(FORM_TOKEN_FIELD), web.ctx.now().timestamp()
    ):
        page = await run_in_threadpool(flows.confirmation_page, web.ctx, token)
        problem = "This page had expired. Please press the button again."
        return render(request, "confirm.html", 403, page=page, token=token, problem=problem)
    page = await run_in_threadpool(flows.confirm, web.ctx, token)
    notice = (
        "Your subscription is confirmed. Your first digest arrives at the hour you chose."
        if page.changed
        else "Your subscription was already confirmed."
    )
    return prefs_page(request, page, notice=notice)


@router.get("/unsubscribe/{token}", summary="Unsubscribe page", response_class=Response)
async def unsubscribe_page(request: Request, token: str) -> Response:
    """A page with one button; GET never changes anything (mail scanners follow links)."""
    page = await run_in_threadpool(flows.show, state(request).ctx, "unsubscribe", token)
    return render(request, "unsubscribe.html", sub=page.sub, token=token)


@router.post(
    "/unsubscribe/{token}",
    summary="One-click unsubscribe (RFC 8058)",
    response_class=Response,
    openapi_extra=_ONE_CLICK_BODY,
)
async def unsubscribe(request: Request, token: str) -> Response:
    """Unsubscribe at once: 200, no login, no redirect. Mail providers post here directly,
    so there is no cross-site check: the signed token is the authorization."""
    limited = rate_limited(request)
    if limited is not None:
        return limited
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        form = await read_form(request)
        value, via = form.get("List-Unsubscribe"), form.get("via")
    else:
        raw = (await request.body()).decode("utf-8", errors="replace")
        fields = parse_qs(raw)
        value = next(iter(fields.get("List-Unsubscribe", [])), None)
        via = next(iter(fields.get("via", [])), None)
    if value != "One-Click":
        return error(request, 400, "Expected the body List-Unsubscribe=One-Click (RFC 8058).")
    # The page's button says so; anything else is a mail client's one-click POST.
    way = "page" if via == "page" else "one-click"
    done = await run_in_threadpool(flows.unsubscribe, state(request).ctx, token, how=way)
    return render(request, "unsubscribed.html", email=done.email, changed=done.changed)


@router.get("/preferences/{token}", summary="Preference center", response_class=Response)
async def preferences_page(request: Request, token: str) -> Response:
    """Show the subscriber's preferences in an editable form."""
    page = await run_in_threadpool(flows.show, state(request).ctx, "preferences", token)
    asked = forms.follow_from_link(list(page.sub.follows), request.query_params)
    if asked is not None:  # a `follow NAME` mail command's link: filled in, not saved
        follows, notice = asked
        return prefs_page(request, page, notice=notice, values={"follows": follows})
    return prefs_page(request, page)


@router.post(
    "/preferences/{token}",
    summary="Change preferences, pause, resume or delete my data",
    response_class=Response,
    openapi_extra=_FORM_BODY,
)
async def preferences(request: Request, token: str) -> Response:
    """Apply one action of the preference center (a same-site form with a valid form token)."""
    web = state(request)
    refused = form_refused(request, "preferences form (form-encoded)")
    if refused is not None:
        return refused
    form = await read_form(request)
    ctx = web.ctx
    page = await run_in_threadpool(flows.show, ctx, "preferences", token)
    if not form_token_valid(
        ctx.secret_key, "preferences", form.get(FORM_TOKEN_FIELD), ctx.now().timestamp()
    ):
        message = "This page had expired. Please make your change again."
        return prefs_page(request, page, 403, errors={"form": message})

    action = form.get("action", "save")
    if action == "save":
        data = forms.from_form(form)
        data.pop("email", None)
        data.pop("name", None)
        parsed = forms.validate(data, base=Preferences.of(page.sub), need_email=False)
        if not parsed.ok:
            return prefs_page(request, page, 422, values=parsed.values, errors=parsed.errors)
        assert parsed.prefs is not None
        liked = form.get("liked_papers")
        refs = parse_refs(liked) if isinstance(liked, str) else None
        try:
            done = await run_in_threadpool(flows.save_preferences, ctx, token, parsed.prefs, refs)
        except ValueError as exc:  # an unknown paper, or too many
            values = {**parsed.values, "liked_papers": liked}
            message = str(exc)[:1].upper() + str(exc)[1:] + "."
            return prefs_page(request, page, 422, values=values, errors={"liked_papers": message})
        assert done.page is not None
        notice = "Your preferences are saved." if done.changed else "Nothing changed."
        return prefs_page(request, done.page, notice=notice)
    if action == "clear_votes":
        cleared, page = await run_in_threadpool(flows.clear_votes, ctx, token)
        notice = (
            f"Cleared {cleared} vote{'s' if cleared != 1 else ''}: your digests follow your "
            "topics again."
            if cleared
            else "There were no votes to clear."
        )
        return prefs_page(request, page, notice=notice)
    if action == "sign_out":
        await run_in_threadpool(flows.sign_out_everywhere, ctx, token)
        return render(request, "signed_out.html")
    if action in ("pause", "resume"):
        page, problem = await run_in_threadpool(flows.set_paused, ctx, token, action == "pause")
        if problem:
            return prefs_page(request, page, 409, errors={"form": problem})
        notice = (
            "Your digest is paused. Resume it here whenever you like."
            if action == "pause"
            else "Your digest is back on."
        )
        return prefs_page(request, page, notice=notice)
    if action == "forget":
        if form.get("confirm_forget") != "yes":
            message = "Tick the box to confirm that everything should be deleted."
            return prefs_page(request, page, 422, errors={"confirm_forget": message})
        await run_in_threadpool(flows.forget, ctx, token)
        return render(request, "forgotten.html")
    return prefs_page(request, page, 400, errors={"form": "Unknown action."})
