"""A short soak (a few seconds) of a real `digestd run` hosting the SMTP listener, the web
and the scheduler: 20 SMTP connections at once, 12 of them hostile (floods without CRLF,
SIZE lies, over-long and bad commands, silent and trickling sessions, relay attempts), 8
sending valid bounces as an MTA does. Every valid bounce answered 250 is recorded, none is
refused, the process's peak RSS stays within 50 MB of its start, and /healthz (database and
scheduler) answers 200 throughout. benchmarks/bench_inbound_soak.py is the 60 s version."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.inbound_soak import recorded, soak, soak_daemon
from tests.support.smtp import SmtpTestServer

HEADROOM_KB = 50 * 1024

pytestmark = pytest.mark.slow  # a real daemon for seconds (soak_daemon)


def test_hostile_and_valid_mail_at_once(tmp_path: Path, smtp_server: SmtpTestServer) -> None:
    with soak_daemon(tmp_path, 20, smtp_server.port, DIGESTD_INBOUND_TIMEOUT="1") as (
        process,
        target,
        url,
    ):
        report = soak(target, seconds=4)
        kinds = recorded(url)
        alive = process.proc.poll() is None
    summary = "\n".join(report.lines())
    print(summary)
    assert alive, process.output
    assert report.valid_sent > 0 and report.valid_refused == 0, summary
    assert kinds == {"bounce": report.valid_sent}, (kinds, summary)
    assert report.peak_rss_kb - report.start_rss_kb <= HEADROOM_KB, summary
    assert report.healthz_ms and set(report.healthz_codes) == {"200"}, summary
    # Each hostile kind was tried and answered as the listener promises.
    tried = {key.split(" ", 1)[0] for key in report.hostile}
    assert tried >= {"no-crlf", "size-lie", "long-command", "relay", "bad-commands"}, summary
    for kind, code in (("no-crlf", "552"), ("size-lie", "552"), ("long-command", "500")):
        assert f"{kind} {code}" in report.hostile, summary
    assert "Traceback" not in process.output
