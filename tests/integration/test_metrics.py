"""`GET /metrics` on a real uvicorn: prometheus-client's own parser reads it, and the counters
move after a real send to the real SMTP server (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from digestd.core.context import AppContext
from digestd.delivery.sending import send_due
from tests.support.sending import plan_digests
from tests.support.smtp import SmtpTestServer
from tests.support.web import running_web


def scrape(base_url: str, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, keyed by (name, sorted labels), parsed by prometheus-client."""
    response = httpx.get(f"{base_url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        assert family.name.startswith("digestd_"), family.name
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_metrics_parse_and_move_after_a_real_send(
    app: AppContext, smtp_server: SmtpTestServer
) -> None:
    plan_digests(app, smtp_server.port, 5)
    # s3 is refused for good (a bad address), s4 for now (temporary).
    smtp_server.set_fault(
        lambda rcpt, _n: {
            "s3@example.org": "550 5.1.1 no such user",
            "s4@example.org": "451 4.3.0 try again later",
        }.get(rcpt)
    )
    with running_web(app, smtp_server) as web:
        before = scrape(web.base_url)
        assert value(before, "digestd_messages_sent_total") == 0
        assert value(before, "digestd_subscribers", status="active") == 5
        assert value(before, "digestd_subscribers", status="bounced") == 0
        assert value(before, "digestd_deliveries", status="pending") == 5
        assert value(before, "digestd_database_up") == 1
        assert value(before, "digestd_oldest_due_delivery_age_seconds") >= 0

        # The send runs on the web's own context: one process, one registry.
        ctx = web.ctx
        ctx.settings = replace(ctx.settings, smtp_port=smtp_server.port)
        report = asyncio.run(send_due(ctx, worker_id="metrics-test"))
        assert (report.sent, report.failed, report.retry) == (3, 1, 1)

        after = scrape(web.base_url)
        assert value(after, "digestd_messages_sent_total") == 3
        assert value(after, "digestd_messages_failed_total") == 1
        assert value(after, "digestd_messages_bounced_total") == 1
        assert value(after, "digestd_messages_retried_total") == 1
        # Every transaction is timed, refused ones too.
        assert value(after, "digestd_smtp_transaction_seconds_count") == 5
        assert value(after, "digestd_send_pass_duration_seconds_count") == 1
        assert value(after, "digestd_deliveries", status="pending") == 0
        assert value(after, "digestd_deliveries", status="retry") == 1
        # The first scrape was counted by route template and status.
        assert value(after, "digestd_web_requests_total", route="/metrics", status="200") >= 1

        # A path no route takes is one label, never the path itself (links carry tokens).
        assert httpx.get(f"{web.base_url}/unsubscribe-x/secret-token").status_code == 404
        text = httpx.get(f"{web.base_url}/metrics").text
        assert "secret-token" not in text
        third = scrape(web.base_url)
        assert value(third, "digestd_web_requests_total", route="unmatched", status="404") == 1


@pytest.mark.backend  # the metrics' aggregates on PostgreSQL
def test_metrics_token_is_required_when_set(app: AppContext, smtp_server: SmtpTestServer) -> None:
    app.settings = replace(app.settings, metrics_token="scrape-token-0123456789")
    with running_web(app, smtp_server) as web:
        assert httpx.get(f"{web.base_url}/metrics").status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert httpx.get(f"{web.base_url}/metrics", headers=wrong).status_code == 401
        samples = scrape(web.base_url, Authorization="Bearer scrape-token-0123456789")
        assert value(samples, "digestd_web_requests_total", route="/metrics", status="401") == 2


def test_inbound_mail_counts_by_kind(app: AppContext) -> None:
    from digestd.inbound.addresses import verp_address
    from digestd.inbound.process import process_message
    from tests.support.inbound import BOUNCE_ADDRESS, dsn, plain

    ctx = app
    ctx.settings = replace(ctx.settings, bounce_address=BOUNCE_ADDRESS)
    verp = verp_address(ctx.settings, ctx.secret_key, 12345)
    bounce = dsn(to=verp, recipient="gone@example.net")
    assert process_message(ctx, bounce, rcpt_to=[verp], source="t").kind == "bounce"
    noise = plain(sender="someone@example.net", to=BOUNCE_ADDRESS, subject="hello")
    assert process_message(ctx, noise, rcpt_to=[BOUNCE_ADDRESS], source="t").kind
    process_message(ctx, noise, rcpt_to=[BOUNCE_ADDRESS], source="t", dry_run=True)

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(ctx.metrics.exposition().decode())
        for s in f.samples
    }
    inbound = {
        dict(labels)["kind"]: n
        for (name, labels), n in samples.items()
        if name == "digestd_inbound_messages_total"
    }
    assert inbound["bounce"] == 1 and sum(inbound.values()) == 2  # a dry run is not counted
    assert samples[("digestd_messages_bounced_total", ())] == 1
