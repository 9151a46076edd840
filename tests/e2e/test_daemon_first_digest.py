"""A daemon (re)started at the send hour with a source not fetched yet sends a full digest:
the papers the source holds are ingested before the first plan, not after it."""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime, timedelta

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.paths import data_dir
from digestd.delivery import deliveries
from digestd.ingest.sources import add_source
from tests.support.daemon import DaemonProcess, daemon_env, wait_until
from tests.support.digests import add_subscriber
from tests.support.feeds import Reply, feed_server
from tests.support.smtp import SmtpTestServer


def test_restart_at_send_hour_with_an_unfetched_source_sends_its_papers(
    sqlite_url: str, smtp_server: SmtpTestServer
) -> None:
    url = sqlite_url
    feed = (data_dir("seeds") / "trending-papers.json").read_bytes()
    release = threading.Event()
    with feed_server() as server:
        # The feed answers only when the test says so: a slow source at start.
        path = server.serve(
            "/papers.json", Reply(body=feed, content_type="application/feed+json", hold=release)
        )
        now = datetime.now(UTC)
        ctx = AppContext(Settings(database_url=url), actor="test")
        ctx.migrate()
        with session_scope(ctx.engine) as s:
            add_source(s, path, now=now, name="Trending", allow_private=True)
            # Due now: its local hour is this hour, and it joined days ago.
            add_subscriber(s, "first@example.org", now - timedelta(days=3), send_hour=now.hour)
        daemon = DaemonProcess(daemon_env(url, smtp_server.port))
        try:
            wait_until(lambda: bool(server.hits("/papers.json")), 60, "the first fetch")
            release.set()
            wait_until(lambda: len(smtp_server.messages) == 1, 60, "the first digest")
            daemon.signal(signal.SIGTERM)
            assert daemon.wait(timeout=30) == 0, daemon.output
        finally:
            release.set()
            daemon.stop()
    [mail] = smtp_server.messages
    assert mail.recipients == ["first@example.org"]
    assert ", and 9 more papers · " in mail.message["Subject"], daemon.output
    with session_scope(ctx.engine) as s:
        [row] = deliveries.list_deliveries(s)
        assert row.status == "sent" and row.entry_count == 10
        assert len(deliveries.entry_ids(s, row.id)) == 10
    ctx.dispose()
