"""IMAP polling: read what came back from a hosted mailbox, file what was handled.

stdlib imaplib does what is needed here (TLS and STARTTLS with a caller's SSL context,
timeouts, UID commands, MOVE), so no third-party client: the only hand-written parts are
reading its tuple-shaped FETCH answers and the cursor below.

One poll (run in a worker thread by the daemon; it is blocking I/O):

1. log in (implicit TLS, STARTTLS or, for a server on the same machine, plain), make sure
   the folder for handled mail exists, select the mailbox;
2. take the messages whose UID is above the cursor, oldest first, at most `batch` of them;
3. hand each to the processing (`handle`), which records it and applies the policy;
4. a message of a kind it recognised is moved to the folder (UID MOVE; where the server has
   no MOVE, COPY then flag it \\Deleted, expunging only that UID when UIDPLUS allows);
   an `unrecognized` one stays where it is, unread. Nothing is ever deleted otherwise;
5. the cursor (the mailbox's UIDVALIDITY and the last UID handled) is kept in the `meta`
   table after each message, so a message left in place is not recorded again on the next
   poll, and a crash re-reads at most the one message being handled.

Messages are fetched with BODY.PEEK (no \\Seen flag is set) and one at a time, a huge one
only up to DIGESTD_INBOUND_MAX_BYTES (it is recorded as what that much of it says).
"""

from __future__ import annotations

import contextlib
import hashlib
import imaplib
import logging
import re
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from digestd.core.config_imap import ImapTarget

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from digestd.core.context import AppContext

log = logging.getLogger("digestd.inbound.imap")

UNRECOGNIZED = "unrecognized"


class Recorded(Protocol):
    @property
    def kind(self) -> str: ...

    @property
    def recorded_id(self) -> int | None: ...


# handle(raw, source) -> Recorded: records one message (synchronous).
Handler = Callable[[bytes, str], Recorded]


class ImapPollError(RuntimeError):
    """The mailbox could not be polled (connection, login, folder); one line, no password."""


@dataclass
class Cursor:
    """Where the last poll stopped: the mailbox's UIDVALIDITY and the last UID handled."""

    uidvalidity: int = 0
    last_uid: int = 0


class CursorStore(Protocol):
    def load(self) -> Cursor: ...

    def save(self, cursor: Cursor) -> None: ...


@dataclass
class MemoryCursor:
    """A cursor kept in memory (tests; `digestd run` keeps it in the database)."""

    cursor: Cursor = field(default_factory=Cursor)

    def load(self) -> Cursor:
        return Cursor(self.cursor.uidvalidity, self.cursor.last_uid)

    def save(self, cursor: Cursor) -> None:
        self.cursor = Cursor(cursor.uidvalidity, cursor.last_uid)


@dataclass
class PollReport:
    """What one poll did, for the daemon's one log line."""

    handled: int = 0
    moved: int = 0
    left: int = 0
    waiting: int = 0  # above the batch bound: the next poll takes them
    kinds: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        kinds = ",".join(f"{k}:{n}" for k, n in sorted(self.kinds.items())) or "-"
        return (
            f"handled={self.handled} moved={self.moved} left={self.left} "
            f"waiting={self.waiting} kinds={kinds}"
        )


@dataclass(frozen=True)
class PollLimits:
    folder: str = "digestd-processed"
    batch: int = 100
    timeout: float = 60.0
    max_bytes: int = 10 * 1024 * 1024


def poll_mailbox(
    target: ImapTarget,
    handle: Handler,
    cursor_store: CursorStore,
    limits: PollLimits | None = None,
    *,
    ssl_context: ssl.SSLContext | None = None,
    stop: Callable[[], bool] | None = None,
) -> PollReport:
    """One bounded poll of the mailbox (see the module docstring); ImapPollError if the
    mailbox cannot be reached. An error from `handle` (the database is down) ends the poll
    with that message left unhandled, for the next poll. `stop()` true ends it between two
    messages (the daemon is stopping)."""
    limits = limits or PollLimits()
    report = PollReport()
    with _session(target, limits.timeout, ssl_context) as conn:
        caps = _capabilities(conn)
        _ensure_folder(conn, limits.folder)
        uidvalidity = _select(conn, target.mailbox)
        cursor = cursor_store.load()
        if cursor.uidvalidity != uidvalidity:
            if cursor.uidvalidity:
                log.warning(
                    "imap mailbox=%s UIDVALIDITY changed (%d -> %d): reading it from the start",
                    target.mailbox,
                    cursor.uidvalidity,
                    uidvalidity,
                )
            cursor = Cursor(uidvalidity, 0)
        uids = _uids_above(conn, cursor.last_uid)
        report.waiting = max(0, len(uids) - limits.batch)
        source = f"imap:{target.username}@{target.host}/{target.mailbox}"
        for uid in uids[: limits.batch]:
            if stop is not None and stop():
                break
            raw = _fetch(conn, uid, limits.max_bytes)
            if raw is None:  # expunged by someone else meanwhile
                cursor.last_uid = uid
                cursor_store.save(cursor)
                continue
            result = handle(raw, source)
            report.handled += 1
            report.kinds[result.kind] = report.kinds.get(result.kind, 0) + 1
            if result.kind == UNRECOGNIZED:
                report.left += 1
            else:
                _move(conn, uid, limits.folder, caps)
                report.moved += 1
            # Saved per message: the message just recorded is never recorded twice, even
            # if the next one fails.
            cursor.last_uid = uid
            cursor_store.save(cursor)
    return report


# ---- imaplib plumbing ------------------------------------------------------------------


@contextlib.contextmanager
def _session(
    target: ImapTarget, timeout: float, ssl_context: ssl.SSLContext | None
) -> Iterator[imaplib.IMAP4]:
    where = f"{target.host}:{target.port}"
    context = ssl_context or ssl.create_default_context()
    try:
        if target.tls == "tls":
            conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                target.host, target.port, ssl_context=context, timeout=timeout
            )
        else:
            conn = imaplib.IMAP4(target.host, target.port, timeout=timeout)
    except (OSError, imaplib.IMAP4.error) as exc:
        raise ImapPollError(f"cannot connect to IMAP server {where}: {_reason(exc)}") from None
    try:
        try:
            if target.tls == "starttls":
                conn.starttls(ssl_context=context)
        except (OSError, imaplib.IMAP4.error) as exc:
            raise ImapPollError(f"STARTTLS with {where} failed: {_reason(exc)}") from None
        try:
            conn.login(target.username, target.password)
        except imaplib.IMAP4.error as exc:
            raise ImapPollError(
                f"IMAP login as {target.username} at {where} refused: {_reason(exc)}"
            ) from None
        yield conn
    except (OSError, imaplib.IMAP4.abort) as exc:
        raise ImapPollError(f"IMAP connection to {where} failed: {_reason(exc)}") from None
    finally:
        with contextlib.suppress(Exception):
            conn.logout()


def _capabilities(conn: imaplib.IMAP4) -> set[str]:
    # After login the server may announce more than before (imaplib keeps the first list).
    typ, data = conn.capability()
    if typ == "OK" and data and data[0]:
        return {c.upper() for c in _text(data[0]).split()}
    return {c.upper() for c in conn.capabilities}


def _quote(mailbox: str) -> str:
    # Names are ASCII without quotes or backslashes (checked when settings load).
    return '"' + mailbox + '"'


def _ensure_folder(conn: imaplib.IMAP4, folder: str) -> None:
    typ, data = conn.list('""', _quote(folder))
    if typ == "OK" and any(item for item in data if item):
        return
    typ, data = conn.create(_quote(folder))
    if typ != "OK":
        raise ImapPollError(f"cannot create IMAP folder {folder!r}: {_text(data)}")
    log.info("imap created folder=%s", folder)


def _select(conn: imaplib.IMAP4, mailbox: str) -> int:
    typ, data = conn.select(_quote(mailbox))
    if typ != "OK":
        raise ImapPollError(f"cannot open IMAP mailbox {mailbox!r}: {_text(data)}")
    _, values = conn.response("UIDVALIDITY")
    try:
        return int(_text(values[0]))
    except (TypeError, ValueError, IndexError):
        return 0


def _uids_above(conn: imaplib.IMAP4, last_uid: int) -> list[int]:
    # `n:*` always includes the highest UID even when it is below n: filter again.
    typ, data = conn.uid("SEARCH", f"UID {last_uid + 1}:*")
    if typ != "OK":
        raise ImapPollError(f"IMAP search failed: {_text(data)}")
    found = sorted({int(u) for u in _text(data[0]).split() if u.isdigit()})
    return [u for u in found if u > last_uid]


_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


def _fetch(conn: imaplib.IMAP4, uid: int, max_bytes: int) -> bytes | None:
    """The message (its first `max_bytes` if larger), without setting \\Seen."""
    typ, data = conn.uid("FETCH", str(uid), "(RFC822.SIZE)")
    if typ != "OK" or not data or data[0] is None:
        return None
    head = data[0] if isinstance(data[0], bytes) else data[0][0]
    match = _SIZE.search(head)
    size = int(match.group(1)) if match else 0
    part = "BODY.PEEK[]" if size <= max_bytes else f"BODY.PEEK[]<0.{max_bytes}>"
    typ, data = conn.uid("FETCH", str(uid), f"({part})")
    if typ != "OK":
        raise ImapPollError(f"IMAP fetch of UID {uid} failed: {_text(data)}")
    for item in data:
        if isinstance(item, tuple) and len(item) == 2:
            return bytes(item[1])
    return None


def _move(conn: imaplib.IMAP4, uid: int, folder: str, caps: set[str]) -> None:
    if "MOVE" in caps:
        typ, data = conn.uid("MOVE", str(uid), _quote(folder))
        if typ != "OK":
            raise ImapPollError(f"IMAP move of UID {uid} failed: {_text(data)}")
        return
    typ, data = conn.uid("COPY", str(uid), _quote(folder))
    if typ != "OK":
        raise ImapPollError(f"IMAP copy of UID {uid} failed: {_text(data)}")
    conn.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Deleted)")
    if "UIDPLUS" in caps:
        # Only this UID: a plain EXPUNGE would also remove what someone else flagged.
        conn.uid("EXPUNGE", str(uid))


def _text(value: object) -> str:
    if isinstance(value, list | tuple):
        return " ".join(_text(v) for v in value if v is not None)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _reason(exc: BaseException) -> str:
    text = (str(exc).strip() or type(exc).__name__).splitlines()[0]
    return text


# ---- wiring to the processing and the database ----------------------------------------


class MetaCursor:
    """The cursor of one mailbox in the `meta` table (key: a digest of user, host, mailbox)."""

    def __init__(self, engine: Engine, target: ImapTarget) -> None:
        self.engine = engine
        ident = f"{target.username}@{target.host}:{target.port}/{target.mailbox}"
        self.key = "imap-cursor:" + hashlib.sha256(ident.encode()).hexdigest()[:40]

    def load(self) -> Cursor:
        from digestd.core.db import session_scope
        from digestd.core.models import Meta

        with session_scope(self.engine) as session:
            row = session.get(Meta, self.key)
            if row is None:
                return Cursor()
            validity, _, last = row.value.partition(":")
            try:
                return Cursor(int(validity), int(last))
            except ValueError:
                return Cursor()

    def save(self, cursor: Cursor) -> None:
        from digestd.core.db import session_scope
        from digestd.core.models import Meta

        with session_scope(self.engine) as session:
            value = f"{cursor.uidvalidity}:{cursor.last_uid}"
            row = session.get(Meta, self.key)
            if row is None:
                session.add(Meta(key=self.key, value=value))
            else:
                row.value = value


def poll_configured_mailbox(
    ctx: AppContext,
    *,
    ssl_context: ssl.SSLContext | None = None,
    stop: Callable[[], bool] | None = None,
) -> PollReport:
    """One poll of DIGESTD_INBOUND_IMAP, each message recorded by process_message."""
    from digestd.inbound.process import process_message

    target = ctx.settings.imap
    if target is None:
        return PollReport()
    settings = ctx.settings

    def handle(raw: bytes, source: str) -> Recorded:
        return process_message(ctx, raw, source=source)

    cursor = MetaCursor(ctx.engine, target)
    with _one_poller(ctx.engine, cursor.key) as mine:
        if not mine:
            log.info("imap mailbox=%s is being polled by another replica", target.mailbox)
            return PollReport()
        return poll_mailbox(
            target,
            handle,
            cursor,
            PollLimits(
                folder=settings.inbound_imap_folder,
                batch=settings.inbound_imap_batch,
                timeout=settings.inbound_timeout,
                max_bytes=settings.inbound_max_bytes,
            ),
            ssl_context=ssl_context,
            stop=stop,
        )


@contextlib.contextmanager
def _one_poller(engine: Engine, key: str) -> Iterator[bool]:
    """True when this process may poll: on PostgreSQL, replicas share the mailbox, so a
    session advisory lock lets one of them poll at a time (the others skip this round);
    SQLite has a single daemon."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    from sqlalchemy import text

    lock_id = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
    with engine.connect() as conn:
        got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_id}).scalar())
        conn.commit()
        try:
            yield got
        finally:
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_id})
                conn.commit()
