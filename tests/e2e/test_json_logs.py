"""DIGESTD_LOG_FORMAT=json: the real daemon (scheduler, jobs, uvicorn) writes one JSON object
per line, with the job's fields, and never an address or a secret."""

from __future__ import annotations

import json
import signal

from tests.support.daemon import (
    SECRET,
    DaemonProcess,
    daemon_env,
    delivery_statuses,
    seed_due_deliveries,
    wait_until,
)
from tests.support.smtp import SmtpTestServer


def test_daemon_json_logs_parse_line_by_line(sqlite_url: str, smtp_server: SmtpTestServer) -> None:
    url = sqlite_url
    planned = seed_due_deliveries(url, 3)
    refused = sorted(planned.values())[0]
    # The server's reply quotes the address, as real ones do: it must not reach the log.
    smtp_server.set_fault(
        lambda rcpt, _n: f"550 5.1.1 <{rcpt}>: no such user" if rcpt == refused else None
    )
    env = daemon_env(url, smtp_server.port, DIGESTD_LOG_FORMAT="json", DIGESTD_LOG_LEVEL="debug")
    # A new interpreter: how logging is set up at the start of a process is what is read.
    daemon = DaemonProcess(env, interpreter=True)
    try:
        wait_until(lambda: delivery_statuses(url) == {"sent": 2, "failed": 1}, 60, "the send pass")
        daemon.wait_for_line(r'"job": "send".*"sent": 2')
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0, daemon.output
    finally:
        daemon.stop()

    records = []
    for line in daemon.lines:
        record = json.loads(line)  # every line, not only ours
        assert isinstance(record, dict), line
        assert {"time", "level", "logger", "message"} <= set(record), line
        records.append(record)
    loggers = {r["logger"].split(".")[0] for r in records}
    assert {"digestd", "uvicorn", "apscheduler"} <= loggers, loggers

    [send] = [r for r in records if r.get("job") == "send" and r.get("sent") == 2]
    assert send["level"] == "INFO"
    assert send["failed"] == 1 and send["claimed"] == 3
    assert isinstance(send["duration_ms"], int)
    assert send["worker"]
    assert send["time"].endswith("+00:00")
    assert "<address>" in send["problem"]

    text = "\n".join(daemon.lines)
    assert "@example.org" not in text
    assert SECRET not in text
