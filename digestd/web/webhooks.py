"""Provider webhooks: `POST /webhooks/ses`, `/sendgrid`, `/postmark`, `/mailgun`, `/standard`.

Each route is 404 until its secret is set (DIGESTD_SES_TOPIC_ARNS, _SENDGRID_PUBLIC_KEY,
_POSTMARK_AUTH, _MAILGUN_SIGNING_KEY, _WEBHOOK_SECRET); a body over 1 MB is 413
(web/middleware.py); a bad or missing signature, a stale timestamp or a replayed one-time
value is 401 and changes nothing; a verified request is 200 once its bounces and complaints
are recorded and applied (inbound/webhooks/events.py: the same evidence rule, policy and
inbound record as mail). The checks are in `digestd.inbound.webhooks`, one module a
provider; the reason for a 401 is logged, not told to the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.inbound.webhooks import mailgun, postmark, sendgrid, ses, standard
from digestd.inbound.webhooks.checks import Refused, Verified, accept_once, release
from digestd.inbound.webhooks.events import ProviderEvent, record_events

log = logging.getLogger(__name__)
router = APIRouter(prefix="/webhooks", include_in_schema=False)


def _context(request: Request, configured: Any) -> AppContext:
    if not configured:
        raise HTTPException(404, "There is no page at this address.")
    ctx: AppContext = request.app.state.web.ctx
    return ctx


def _refused(provider: str, exc: Refused) -> JSONResponse:
    log.warning("webhook %s refused: %s", provider, exc)
    return JSONResponse({"error": "signature, timestamp or id not accepted"}, status_code=401)


def _record(
    ctx: AppContext, provider: str, verified: Verified, events: list[ProviderEvent]
) -> list[str] | None:
    """Take the one-time values (committed first, so a replay racing this request is refused),
    then record and apply each event (`record_events`: evidence, policy and record, the step
    mail shares). None when a value was seen before (a replay). Should recording fail, the
    values are given back, so the provider's retry is not refused."""
    with session_scope(ctx.engine) as session:
        if not accept_once(session, provider, verified.once, ctx.now()):
            session.rollback()
            return None
    try:
        return record_events(ctx, provider, events)
    except Exception:
        with session_scope(ctx.engine) as session:
            release(session, provider, verified.once)
        raise


async def _accept(
    ctx: AppContext, provider: str, verified: Verified, read: Callable[[Any], list[ProviderEvent]]
) -> JSONResponse:
    events = read(verified.payload)
    effects = await run_in_threadpool(_record, ctx, provider, verified, events)
    if effects is None:
        return _refused(provider, Refused("replayed: this one-time value was accepted before"))
    log.info("webhook %s: %d events recorded", provider, len(effects))
    return JSONResponse({"recorded": len(effects), "effects": effects})


def sns_verifier(request: Request) -> ses.SnsVerifier:
    """The app's SNS verifier (it caches certificates). Tests put one on `app.state` that
    allows their loopback certificate server; nothing else can."""
    state = request.app.state
    verifier = getattr(state, "sns_verifier", None)
    if verifier is None:
        verifier = state.sns_verifier = ses.SnsVerifier(state.web.ctx.settings.ses_topics)
    return verifier


@router.post("/ses")
async def ses_webhook(request: Request) -> JSONResponse:
    """Amazon SES notifications through SNS (signature v1/v2, topic allowlist)."""
    ctx = _context(request, request.app.state.web.ctx.settings.ses_topics)
    body = await request.body()
    verifier = sns_verifier(request)
    try:
        verified = await verifier.verify(body, ctx.now())
        kind = verified.payload.get("Type")
        if kind == "SubscriptionConfirmation":
            await verifier.confirm(verified.payload)
            log.info("webhook ses: subscription to %s confirmed", verified.payload["TopicArn"])
            return JSONResponse({"confirmed": True})
    except Refused as exc:
        return _refused("ses", exc)
    if kind != "Notification":
        return JSONResponse({"recorded": 0, "effects": []})
    return await _accept(ctx, "ses", verified, ses.events)


@router.post("/sendgrid")
async def sendgrid_webhook(request: Request) -> JSONResponse:
    """SendGrid's signed event webhook (ECDSA P-256, 5-minute window)."""
    key = request.app.state.web.ctx.settings.sendgrid_public_key
    ctx = _context(request, key)
    body = await request.body()
    try:
        verified = sendgrid.verify(key, request.headers, body, ctx.now())
    except Refused as exc:
        return _refused("sendgrid", exc)
    return await _accept(ctx, "sendgrid", verified, sendgrid.events)


@router.post("/postmark")
async def postmark_webhook(request: Request) -> JSONResponse:
    """Postmark's bounce and spam-complaint webhooks (HTTP basic auth)."""
    auth = request.app.state.web.ctx.settings.postmark_auth
    ctx = _context(request, auth)
    body = await request.body()
    try:
        verified = postmark.verify(auth, request.headers, body)
    except Refused as exc:
        return _refused("postmark", exc)
    return await _accept(ctx, "postmark", verified, postmark.events)


@router.post("/mailgun")
async def mailgun_webhook(request: Request) -> JSONResponse:
    """Mailgun's signed webhooks (HMAC-SHA256, 5-minute window, each token once)."""
    key = request.app.state.web.ctx.settings.mailgun_signing_key
    ctx = _context(request, key)
    body = await request.body()
    try:
        verified = mailgun.verify(key, body, ctx.now())
    except Refused as exc:
        return _refused("mailgun", exc)
    return await _accept(ctx, "mailgun", verified, mailgun.events)


@router.post("/standard")
async def standard_webhook(request: Request) -> JSONResponse:
    """Standard Webhooks (webhook-id / -timestamp / -signature; Resend and others)."""
    secret = request.app.state.web.ctx.settings.webhook_secret
    ctx = _context(request, secret)
    body = await request.body()
    try:
        verified = standard.verify(secret, request.headers, body, ctx.now())
    except Refused as exc:
        return _refused("standard", exc)
    return await _accept(ctx, "standard", verified, standard.events)
