"""`digestd run` with the inbound transports configured: the SMTP listener and IMAP
polling (a real Dovecot) feed the real processing; SIGTERM stops both and exits 0.

Also `digestd inbound --listen` alone, and a taken listener port as one line at start."""

from __future__ import annotations

import json
import re
import signal
import smtplib
import socket
from email.parser import BytesHeaderParser
from pathlib import Path

from sqlalchemy import create_engine, text

from digestd.core.config import Settings
from digestd.inbound.addresses import verp_address
from tests.support.cli import run_cli
from tests.support.daemon import (
    SECRET,
    DaemonProcess,
    daemon_env,
    seed_due_deliveries,
    wait_until,
)
from tests.support.dovecot import DovecotServer
from tests.support.inbound import BOUNCE_ADDRESS, dsn
from tests.support.smtp import SmtpTestServer

BOUNCE = BOUNCE_ADDRESS


def rows(url: str, sql: str) -> list[tuple]:
    """Rows of one query on the daemon's database, read from outside the daemon."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def subscriber_status(url: str) -> dict[str, str]:
    return dict(rows(url, "SELECT email, status FROM subscriber"))


def inbound_sources(url: str) -> list[tuple[str, str]]:
    return rows(url, "SELECT kind, source FROM inbound ORDER BY id")


def delivery_ids(url: str) -> dict[str, int]:
    sql = "SELECT s.email, d.id FROM delivery d JOIN subscriber s ON s.id = d.subscriber_id"
    return dict(rows(url, sql))


def verp(url: str, delivery_id: int) -> str:
    settings = Settings(database_url=url, secret_key=SECRET, bounce_address=BOUNCE)
    return verp_address(settings, SECRET, delivery_id)


def subjects(messages: list[bytes]) -> list[str]:
    return [str(BytesHeaderParser().parsebytes(m)["Subject"]) for m in messages]


def test_run_serves_the_listener_and_polls_imap_then_stops_on_sigterm(
    sqlite_url: str, smtp_server: SmtpTestServer, dovecot: DovecotServer
) -> None:
    url = sqlite_url
    seed_due_deliveries(url, 3)
    ids = delivery_ids(url)
    by_smtp, by_imap, untouched = sorted(ids)
    user = dovecot.new_user()
    # Waiting in the mailbox before the daemon starts: its first poll runs at once.
    user.append(dsn(to=verp(url, ids[by_imap]), recipient=by_imap))
    user.append(b"From: someone@example.net\r\nSubject: hello there\r\n\r\nJust saying hi.\r\n")
    env = daemon_env(
        url,
        smtp_server.port,
        DIGESTD_BOUNCE_ADDRESS=BOUNCE,
        DIGESTD_INBOUND_LISTEN="127.0.0.1:0",
        DIGESTD_INBOUND_IMAP=user.url(tls="none"),
        DIGESTD_INBOUND_IMAP_INTERVAL_SECONDS="3600",
    )
    daemon = DaemonProcess(env)
    try:
        line = daemon.wait_for_line(r"digestd running .*inbound_smtp=127\.0\.0\.1:\d+")
        port = int(re.search(r"inbound_smtp=127\.0\.0\.1:(\d+)", line).group(1))  # type: ignore[union-attr]
        assert f"inbound_imap={user.name}@127.0.0.1" in line and user.password not in line

        # IMAP: the DSN is handled and filed; the greeting stays in the inbox, unread.
        wait_until(lambda: subscriber_status(url)[by_imap] == "bounced", 30, "the IMAP DSN handled")
        daemon.wait_for_line(r"job=inbound-imap handled=2 moved=1 left=1")
        assert subjects(user.messages("digestd-processed")) == [
            "Undelivered Mail Returned to Sender"
        ]
        assert subjects(user.messages()) == ["hello there"]

        # SMTP: the digest went out with its VERP envelope sender; the DSN a relay would
        # build from it, delivered to the listener, bounces its subscriber.
        wait_until(lambda: len(smtp_server.messages) == 3, 60, "the three digests sent")
        [sent] = [m for m in smtp_server.messages if m.recipients == [by_smtp]]
        rcpt = sent.envelope_from.strip("<>")
        assert rcpt == verp(url, ids[by_smtp])
        returned = f"Message-ID: {sent.message_id}\nTo: {by_smtp}\n"
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            bounce = dsn(to=rcpt, recipient=by_smtp, original_headers=returned)
            assert client.sendmail("", [rcpt], bounce) == {}
            client.mail("")
            code, _ = client.rcpt("victim@example.com")
            assert code == 550  # and nothing is relayed
        assert subscriber_status(url)[by_smtp] == "bounced"
        assert subscriber_status(url)[untouched] == "active"
        kinds = [(k, s.split(":")[0]) for k, s in inbound_sources(url)]
        assert sorted(kinds) == [("bounce", "imap"), ("bounce", "smtp"), ("unrecognized", "imap")]

        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0, daemon.output
    finally:
        daemon.stop()
    assert "stopped worker=" in daemon.output
    assert "Traceback" not in daemon.output
    # The listener is gone with the daemon.
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        raise AssertionError("the inbound listener still accepts connections")
    except OSError:
        pass


def test_inbound_listen_alone_records_and_stops_on_sigterm(sqlite_url: str) -> None:
    url = sqlite_url
    seed_due_deliveries(url, 1)
    [(email, delivery_id)] = delivery_ids(url).items()
    env = daemon_env(url, 9, DIGESTD_BOUNCE_ADDRESS=BOUNCE, DIGESTD_INBOUND_LISTEN="127.0.0.1:0")
    listener = DaemonProcess(env, "--listen", command=("inbound",))
    try:
        line = listener.wait_for_line(r"digestd inbound listening inbound_smtp=127\.0\.0\.1:\d+")
        port = int(line.rsplit("inbound_smtp=127.0.0.1:", 1)[1].split()[0])
        rcpt = verp(url, delivery_id)
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            assert client.sendmail("", [rcpt], dsn(to=rcpt, recipient=email)) == {}
        assert subscriber_status(url)[email] == "bounced"
        listener.signal(signal.SIGTERM)
        assert listener.wait(timeout=30) == 0, listener.output
    finally:
        listener.stop()
    assert "inbound listener stopped" in listener.output


def test_a_taken_inbound_port_is_one_line_at_start(sqlite_url: str) -> None:
    url = sqlite_url
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = daemon_env(
            url, 9, DIGESTD_BOUNCE_ADDRESS=BOUNCE, DIGESTD_INBOUND_LISTEN=f"127.0.0.1:{port}"
        )
        daemon = DaemonProcess(env)
        try:
            assert daemon.wait(timeout=60) == 1
        finally:
            daemon.stop()
    assert f"cannot listen for inbound mail on 127.0.0.1:{port} (DIGESTD_INBOUND_LISTEN)" in (
        daemon.output
    )
    assert "Traceback" not in daemon.output


def test_run_once_polls_the_mailbox_too(
    tmp_path: Path, sqlite_url: str, smtp_server: SmtpTestServer, dovecot: DovecotServer
) -> None:
    """Cron users have no daemon: `run --once` polls the inbound mailbox once; a mailbox it
    cannot reach is a problem line, and the sending it did stands (exit 0)."""
    url = sqlite_url
    seed_due_deliveries(url, 1)
    [(email, delivery_id)] = delivery_ids(url).items()
    user = dovecot.new_user()
    user.append(dsn(to=verp(url, delivery_id), recipient=email))
    user.append(b"From: someone@example.net\r\nSubject: hello there\r\n\r\nHi.\r\n")
    env = daemon_env(
        url, smtp_server.port, DIGESTD_BOUNCE_ADDRESS=BOUNCE, DIGESTD_INBOUND_IMAP=user.url()
    )
    done = run_cli("run", "--once", "--no-ingest", "--json", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["send"]["sent"] == 1
    imap = report["inbound_imap"]
    assert (imap["handled"], imap["moved"], imap["left"], imap["problem"]) == (2, 1, 1, None)
    assert subscriber_status(url)[email] == "bounced"
    assert subjects(user.messages()) == ["hello there"]

    unreachable = user.url().replace(str(dovecot.imap_port), "1")
    env["DIGESTD_INBOUND_IMAP"] = unreachable
    again = run_cli("run", "--once", "--no-ingest", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "problem: inbound mailbox: cannot connect to IMAP server 127.0.0.1:1" in again.stderr
    assert user.password not in again.stderr + again.stdout
