"""`GET /metrics` in Prometheus' text format, the request counter, and the scrape-time gauges.

Counters and histograms live on the context's `Metrics` (this process's own figures); the
gauges below read the shared database when Prometheus scrapes, so they are never stale and
cost nothing between scrapes (three grouped counts on indexed columns).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.metrics import CONTENT_TYPE, Metrics
from digestd.core.statuses import DeliveryStatus
from digestd.delivery import deliveries
from digestd.subscribers import queries as subscribers
from digestd.web.responses import state

router = APIRouter()
log = logging.getLogger(__name__)

# The queue states worth watching; sent/failed/skipped grow forever (see the counters).
WAITING = (DeliveryStatus.PENDING, DeliveryStatus.RETRY, DeliveryStatus.SENDING)
UNMATCHED = "unmatched"  # requests no route took (404s): one label, not one per path


class DatabaseFigures(Collector):
    """Gauges read from the database at scrape time: subscribers, the queue, its oldest wait."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def describe(self) -> list[Metric]:
        # Without this the registry would collect (query the database) when registering.
        return list(self._families())

    def _families(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "digestd_database_up", "1 when the database answered this scrape, else 0."
        )
        yield GaugeMetricFamily("digestd_subscribers", "Subscribers by status.", labels=["status"])
        yield GaugeMetricFamily(
            "digestd_deliveries",
            "Deliveries waiting (pending, retry) or being sent (sending), by status.",
            labels=["status"],
        )
        yield GaugeMetricFamily(
            "digestd_oldest_due_delivery_age_seconds",
            "How long the longest-waiting due delivery has been due (0 when none waits).",
        )

    def collect(self) -> Iterator[Metric]:
        up, subs_gauge, deliveries_gauge, oldest_gauge = self._families()
        now = self.ctx.now()
        try:
            with session_scope(self.ctx.engine) as session:
                subs = subscribers.count_by_status(session)
                queue = deliveries.counts(session, only=WAITING)
                _, oldest = deliveries.waiting(session, now)
        except Exception as exc:  # a scrape must answer even when the database does not
            log.warning("metrics: database unavailable: %s", str(exc).splitlines()[0])
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for sub_status, n in subs.items():
            subs_gauge.add_metric([str(sub_status)], n)
        yield subs_gauge
        for status in WAITING:
            deliveries_gauge.add_metric([status.value], queue[status])
        yield deliveries_gauge
        oldest_gauge.add_metric([], max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
        yield oldest_gauge


def watch_database(ctx: AppContext) -> None:
    """Add the database gauges to the context's registry (once per context)."""
    ctx.metrics.watch("database", lambda: DatabaseFigures(ctx))


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus scrape endpoint; with DIGESTD_METRICS_TOKEN set, a bearer token is needed."""
    ctx = state(request).ctx
    token = ctx.settings.metrics_token
    if token:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise HTTPException(401, "A valid bearer token is needed for /metrics.")
    return Response(ctx.metrics.exposition(), media_type=CONTENT_TYPE)


class RequestCounter:
    """Counts every answered request by route template and status (ASGI middleware)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the server answers if the app raises before responding

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            # The router put the matched route into the scope; its template (`/u/{token}`),
            # never the path itself, which carries signed tokens and is unbounded.
            route = scope.get("route")
            self.metrics.web_request(getattr(route, "path", None) or UNMATCHED, status)
