"""`GET /healthz`: is the database reachable, is the scheduler running."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from digestd.web import flows
from digestd.web.responses import state

router = APIRouter()
log = logging.getLogger(__name__)


@router.get(
    "/healthz",
    summary="Health: database and scheduler",
    responses={503: {"description": "The database (or a running daemon's scheduler) is down"}},
)
async def healthz(request: Request) -> JSONResponse:
    """200 while the database answers; the scheduler is reported when a daemon hosts the app."""
    db_ok, db_detail = await run_in_threadpool(flows.database_ok, state(request).ctx)
    heartbeat = getattr(request.app.state, "scheduler_heartbeat", None)
    scheduler = "not running"
    scheduler_ok = True
    if heartbeat is not None:
        try:
            scheduler_ok = bool(heartbeat())
        except Exception:  # a broken heartbeat is a dead scheduler, not a 500
            log.exception("scheduler heartbeat failed")
            scheduler_ok = False
        scheduler = "alive" if scheduler_ok else "stopped"
    healthy = db_ok and scheduler_ok
    body = {
        "status": "ok" if healthy else "unhealthy",
        "database": "ok" if db_ok else f"unreachable: {db_detail}",
        "scheduler": scheduler,
    }
    return JSONResponse(body, status_code=200 if healthy else 503)
