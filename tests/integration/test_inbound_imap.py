"""IMAP polling against a real Dovecot: handled mail moves to the folder (created on first
use), unrecognized mail stays where it was, unread, and is not handled twice; polls are
bounded; STARTTLS and implicit TLS with a certificate we trust, and a clear line (never the
password) when the server cannot be reached, is not trusted or refuses the login.

The processing here is a stand-in that names a kind from the Subject; the real processing
is exercised through the daemon in tests/e2e/test_inbound_daemon.py."""

from __future__ import annotations

import ssl
import uuid
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser

import pytest

from digestd.core.config import parse_imap_url
from digestd.inbound.imap_poll import (
    ImapPollError,
    MemoryCursor,
    PollLimits,
    poll_mailbox,
)
from tests.support.dovecot import DovecotServer, ImapUser
from tests.support.listener import FakeRecord


def mail(subject: str, body: bytes = b"text\r\n") -> bytes:
    return (
        f"From: MAILER-DAEMON@mx.example.net\r\nTo: bounces@bounce.example.org\r\n"
        f"Subject: {subject}\r\nMessage-ID: <{subject.replace(' ', '.')}@mx.example.net>\r\n\r\n"
    ).encode() + body


@dataclass
class KindBySubject:
    """Subject `bounce …` → kind bounce; anything else → unrecognized."""

    seen: list[tuple[str, int, str]] = field(default_factory=list)
    fail_on: str | None = None

    def __call__(self, raw: bytes, source: str) -> FakeRecord:
        subject = str(BytesHeaderParser().parsebytes(raw)["Subject"] or "")
        if self.fail_on and subject == self.fail_on:
            raise RuntimeError("database is down")
        self.seen.append((subject, len(raw), source))
        first = subject.split()[0]
        kind = first if first in ("bounce", "complaint") else "unrecognized"
        return FakeRecord(kind, len(self.seen))


def subjects(user: ImapUser, mailbox: str = "INBOX") -> list[str]:
    return [str(BytesHeaderParser().parsebytes(m)["Subject"]) for m in user.messages(mailbox)]


def poll(user: ImapUser, handle: KindBySubject, cursor: MemoryCursor, **limits: object):
    target = parse_imap_url(user.url())
    return poll_mailbox(target, handle, cursor, PollLimits(**limits))  # type: ignore[arg-type]


def test_handled_mail_moves_unrecognized_stays_unread_and_nothing_twice(
    dovecot: DovecotServer,
) -> None:
    user = dovecot.new_user()
    for subject in ("bounce one", "hello there", "complaint two", "out of office"):
        user.append(mail(subject))
    handle, cursor = KindBySubject(), MemoryCursor()

    report = poll(user, handle, cursor)

    assert [s for s, _, _ in handle.seen] == [
        "bounce one",
        "hello there",
        "complaint two",
        "out of office",
    ]
    assert handle.seen[0][2] == f"imap:{user.name}@127.0.0.1/INBOX"
    assert (report.handled, report.moved, report.left) == (4, 2, 2)
    assert subjects(user, "digestd-processed") == ["bounce one", "complaint two"]
    assert subjects(user) == ["hello there", "out of office"]
    assert all(b"\\Seen" not in f for f in user.flags())  # left unread for a human

    again = poll(user, handle, cursor)
    assert again.handled == 0 and len(handle.seen) == 4
    user.append(mail("bounce three"))
    assert poll(user, handle, cursor).moved == 1
    assert subjects(user, "digestd-processed") == ["bounce one", "complaint two", "bounce three"]
    assert subjects(user) == ["hello there", "out of office"]


def test_a_poll_is_bounded_and_the_next_one_goes_on(dovecot: DovecotServer) -> None:
    user = dovecot.new_user()
    for i in range(5):
        user.append(mail(f"bounce {i}"))
    handle, cursor = KindBySubject(), MemoryCursor()
    first = poll(user, handle, cursor, batch=2)
    assert (first.handled, first.waiting) == (2, 3)
    assert poll(user, handle, cursor, batch=2).handled == 2
    assert poll(user, handle, cursor, batch=2).handled == 1
    assert [s for s, _, _ in handle.seen] == [f"bounce {i}" for i in range(5)]
    assert subjects(user) == []


def test_a_recording_failure_leaves_the_message_for_the_next_poll(dovecot: DovecotServer) -> None:
    user = dovecot.new_user()
    for subject in ("bounce a", "bounce b", "bounce c"):
        user.append(mail(subject))
    handle, cursor = KindBySubject(fail_on="bounce b"), MemoryCursor()
    with pytest.raises(RuntimeError, match="database is down"):
        poll(user, handle, cursor)
    assert subjects(user) == ["bounce b", "bounce c"]
    handle.fail_on = None
    assert poll(user, handle, cursor).moved == 2
    assert [s for s, _, _ in handle.seen] == ["bounce a", "bounce b", "bounce c"]


def test_a_huge_message_is_handed_over_only_up_to_the_limit(dovecot: DovecotServer) -> None:
    user = dovecot.new_user()
    user.append(mail("hello huge", b"x" * 998 + b"\r\n") * 1 + (b"y" * 998 + b"\r\n") * 200)
    handle = KindBySubject()
    poll(user, handle, MemoryCursor(), max_bytes=4096)
    [(subject, size, _)] = handle.seen
    assert subject == "hello huge" and size == 4096
    assert subjects(user) == ["hello huge"]  # unrecognized: still there, whole


@pytest.mark.parametrize("tls", ["starttls", "tls"])
def test_starttls_and_implicit_tls_with_a_trusted_certificate(
    dovecot: DovecotServer, tls: str
) -> None:
    user = dovecot.new_user()
    user.append(mail("bounce secure"))
    target = parse_imap_url(user.url(tls=tls))
    assert target.tls == tls
    handle = KindBySubject()
    report = poll_mailbox(target, handle, MemoryCursor(), ssl_context=dovecot.client_context())
    assert report.moved == 1


def test_an_untrusted_certificate_a_wrong_password_or_no_server_is_one_clear_line(
    dovecot: DovecotServer,
) -> None:
    user = dovecot.new_user()
    cases = [
        (user.url(tls="tls"), None, "cannot connect", "CERTIFICATE_VERIFY_FAILED"),
        (user.url(tls="starttls"), None, "STARTTLS", "CERTIFICATE_VERIFY_FAILED"),
        (
            user.url().replace(user.password, "wrong-pass-123"),
            None,
            "login as",
            "refused",
        ),
        (user.url().replace(str(dovecot.imap_port), "1"), None, "cannot connect", "127.0.0.1:1"),
        (user.url(mailbox="Nope"), None, "cannot open IMAP mailbox 'Nope'", "Mailbox doesn't"),
    ]
    for url, context, where, why in cases:
        with pytest.raises(ImapPollError) as caught:
            poll_mailbox(
                parse_imap_url(url),
                KindBySubject(),
                MemoryCursor(),
                PollLimits(timeout=5),
                ssl_context=context,
            )
        message = str(caught.value)
        assert where in message and why in message, message
        assert "\n" not in message and user.password not in message and "wrong-pass" not in message
    assert isinstance(dovecot.client_context(), ssl.SSLContext)


@pytest.mark.postgres
def test_postgres_replicas_poll_one_at_a_time(postgres_url: str) -> None:
    """Replicas share the mailbox: while one polls, another skips the round."""
    from digestd.core.db import make_engine
    from digestd.inbound.imap_poll import _one_poller

    # PostgreSQL's advisory locks are per database, not per schema: keys of this test only,
    # so that other test runs on the same server (xdist workers, other checkouts) never hold
    # them.
    x, y = (f"imap-cursor:{uuid.uuid4().hex}" for _ in range(2))
    engine, other = make_engine(postgres_url), make_engine(postgres_url)
    try:
        with _one_poller(engine, x) as first:
            with _one_poller(other, x) as second:
                assert (first, second) == (True, False)
            with _one_poller(other, y) as unrelated:
                assert unrelated
        with _one_poller(other, x) as after:
            assert after
    finally:
        engine.dispose()
        other.dispose()


@pytest.mark.backend  # the IMAP cursor (meta) on PostgreSQL
def test_the_cursor_survives_in_the_database(dovecot: DovecotServer, db_url: str) -> None:
    """`digestd run` keeps the cursor in the meta table: a restart does not re-read."""
    from digestd.core.config import Settings
    from digestd.core.context import AppContext
    from digestd.inbound.imap_poll import MetaCursor

    user = dovecot.new_user()
    user.append(mail("hello one"))
    ctx = AppContext(Settings(database_url=db_url))
    ctx.migrate()
    target = parse_imap_url(user.url())
    try:
        handle = KindBySubject()
        assert poll_mailbox(target, handle, MetaCursor(ctx.engine, target)).left == 1
        user.append(mail("hello two"))
        assert poll_mailbox(target, handle, MetaCursor(ctx.engine, target)).handled == 1
        assert [s for s, _, _ in handle.seen] == ["hello one", "hello two"]
    finally:
        ctx.dispose()


@pytest.mark.parametrize(
    "caps, left_flagged",
    [({"UIDPLUS"}, False), (set(), True)],
    ids=["copy-uid-expunge", "copy-and-flag-only"],
)
def test_servers_without_move_copy_then_remove_only_that_message(
    dovecot: DovecotServer, caps: set[str], left_flagged: bool
) -> None:
    """Without MOVE: COPY, flag that one message deleted, and expunge only its UID (UIDPLUS);
    without UIDPLUS it stays flagged (a plain EXPUNGE would remove what others flagged)."""
    from digestd.inbound.imap_poll import _ensure_folder, _move

    user = dovecot.new_user()
    user.append(mail("bounce a"))
    user.append(mail("hello someone else's, flagged deleted"))
    conn = user.connect()
    try:
        _ensure_folder(conn, "digestd-processed")
        conn.select('"INBOX"')
        conn.uid("STORE", "2", "+FLAGS.SILENT", r"(\Deleted)")
        _move(conn, 1, "digestd-processed", caps)
    finally:
        conn.logout()
    assert subjects(user, "digestd-processed") == ["bounce a"]
    inbox = subjects(user)
    assert "hello someone else's, flagged deleted" in inbox  # never expunged by us
    assert ("bounce a" in inbox) == left_flagged
