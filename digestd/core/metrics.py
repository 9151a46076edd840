"""Prometheus metrics of one process, on a registry owned by its AppContext.

Nothing is registered at import time: each `Metrics()` has its own `CollectorRegistry`, so
two contexts (two tests, or a CLI command and a daemon) never share or clash on figures.
Each replica serves its own counters; the gauges read the shared database at scrape time
(see `digestd.web.metrics`), so every replica reports the same list and queue figures.

Services call the small `record_*` / `*_received` methods; they never touch a metric object,
so renaming or relabelling one stays a change in this file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.registry import Collector

# Prometheus' own exposition format (text, version 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# A send pass claims batches until none is due: from a second to an hour for a big list.
SEND_PASS_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
# One message on an open pooled connection: milliseconds locally, seconds when slow.
SMTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """Every counter and histogram of digestd; gauges come from collectors added by `watch`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages_sent = Counter(
            "digestd_messages_sent", "Digests the SMTP server accepted.", registry=r
        )
        self.messages_failed = Counter(
            "digestd_messages_failed",
            "Digests given up on (permanent SMTP refusal or attempts used up).",
            registry=r,
        )
        self.messages_retried = Counter(
            "digestd_messages_retried",
            "Send attempts put off to a later try (temporary SMTP failure, render problem).",
            registry=r,
        )
        self.messages_skipped = Counter(
            "digestd_messages_skipped",
            "Deliveries not sent (empty digest, subscriber no longer active).",
            registry=r,
        )
        self.messages_bounced = Counter(
            "digestd_messages_bounced",
            "Messages refused for good because of the address while sending (a hard "
            "failure), plus bounces received back by mail.",
            registry=r,
        )
        self.unwritten = Counter(
            "digestd_outcomes_unwritten",
            "Send outcomes not recorded because this worker no longer held the delivery "
            "(its lease ran out and another worker took it over, or it was recorded already).",
            registry=r,
        )
        self.inbound = Counter(
            "digestd_inbound_messages",
            "Messages that came back (bounce, complaint, unsubscribe, auto_reply, ...).",
            ["kind"],
            registry=r,
        )
        self.web_requests = Counter(
            "digestd_web_requests",
            "Web requests answered, by route template and HTTP status.",
            ["route", "status"],
            registry=r,
        )
        self.fetches = Counter(
            "digestd_fetches",
            "Source fetches, by source id and outcome (ok, not_modified, partial, error).",
            ["source", "outcome"],
            registry=r,
        )
        self.send_pass = Histogram(
            "digestd_send_pass_duration_seconds",
            "Duration of send passes that claimed at least one delivery.",
            buckets=SEND_PASS_BUCKETS,
            registry=r,
        )
        self.smtp_transaction = Histogram(
            "digestd_smtp_transaction_seconds",
            "Time to hand one message to the SMTP server (MAIL FROM to the reply to DATA).",
            buckets=SMTP_BUCKETS,
            registry=r,
        )
        self._watched: set[str] = set()
        self._lock = threading.Lock()

    # -- what services report -------------------------------------------------------------

    def record_sends(
        self,
        *,
        sent: int = 0,
        failed: int = 0,
        retried: int = 0,
        skipped: int = 0,
        bounced: int = 0,
    ) -> None:
        """Count one batch's outcomes (called once per recorded batch, not per message)."""
        for counter, value in (
            (self.messages_sent, sent),
            (self.messages_failed, failed),
            (self.messages_retried, retried),
            (self.messages_skipped, skipped),
            (self.messages_bounced, bounced),
        ):
            if value:
                counter.inc(value)

    def outcomes_unwritten(self, count: int) -> None:
        """Count outcomes `deliveries.record` did not write (the delivery was taken over)."""
        if count:
            self.unwritten.inc(count)

    def inbound_received(self, kind: str) -> None:
        """Count one message that came back, by its kind; a bounce also counts as bounced."""
        self.inbound.labels(kind=kind).inc()
        if kind == "bounce":
            self.messages_bounced.inc()

    def web_request(self, route: str, status: int) -> None:
        """Count one answered web request (route template, never the raw path: it has tokens)."""
        self.web_requests.labels(route=route, status=str(status)).inc()

    def fetched(self, source_id: int, outcome: str) -> None:
        """Count one fetch of a source by how it ended."""
        self.fetches.labels(source=str(source_id), outcome=outcome).inc()

    def send_pass_done(self, seconds: float) -> None:
        """Observe the duration of a send pass that had work."""
        self.send_pass.observe(seconds)

    def smtp_transaction_done(self, seconds: float) -> None:
        """Observe one message's SMTP transaction time."""
        self.smtp_transaction.observe(seconds)

    # -- scraping ----------------------------------------------------------------------------

    def watch(self, name: str, make: Callable[[], Collector]) -> None:
        """Register a scrape-time collector once under `name` (a second web app on the same
        context reuses it rather than failing on duplicate metric names)."""
        with self._lock:
            if name in self._watched:
                return
            self.registry.register(make())
            self._watched.add(name)

    def exposition(self) -> bytes:
        """The text exposition of every metric (collectors run now, in this thread)."""
        return generate_latest(self.registry)
