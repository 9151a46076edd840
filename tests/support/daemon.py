"""The real `digestd run` as a background process, with its log lines readable as events."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from tests.support import prefork
from tests.support.prefork import ForkedProcess

REPO = Path(__file__).resolve().parents[2]


class DaemonProcess:
    """`python -m digestd run` (or another long-running `command`, e.g. `inbound --listen`)
    in a process of its own: forked from an interpreter that has imported digestd already
    (tests/support/prefork.py), or with `interpreter=True` a new interpreter; a thread
    collects its output lines.

    Tests wait on lines (`wait_for_line`) or on any condition (`wait_until`) with a
    bounded timeout; nothing sleeps for time to pass.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        *args: str,
        cwd: Path | str | None = None,
        command: tuple[str, ...] = ("run",),
        interpreter: bool = False,
    ) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("DIGESTD_")}
        clean.update(env)
        clean["NO_COLOR"] = "1"
        clean["COLUMNS"] = "200"
        clean["PYTHONUNBUFFERED"] = "1"
        clean["PYTHONPATH"] = str(REPO) + os.pathsep + clean.get("PYTHONPATH", "")
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.proc: subprocess.Popen[str] | ForkedProcess
        if interpreter:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "digestd", *command, *args],
                env=clean,
                cwd=cwd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
            )
        else:
            self.proc = prefork.start([*command, *args], clean, cwd)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float = 30) -> str:
        """The first output line matching `pattern`; fails if the process ends or time runs out."""
        regex = re.compile(pattern)
        found: list[str] = []

        def matched() -> bool:
            found[:] = [line for line in self.lines if regex.search(line)]
            return bool(found) or self.proc.poll() is not None

        with self._changed:
            self._changed.wait_for(matched, timeout=timeout)
        if not found:
            raise AssertionError(
                f"no line matching {pattern!r} within {timeout}s "
                f"(exit code {self.proc.poll()}):\n{self.output}"
            )
        return found[0]

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Wait for exit (bounded) and for the output to be fully read."""
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def stop(self) -> None:
        """Cleanup for tests: SIGTERM, then SIGKILL if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._reader.join(timeout=5)


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.05
) -> None:
    """Re-check `condition` (a database query, a server count) until true; bounded.

    The short pause between checks only paces polling of another process's progress;
    it never stands in for time that must pass.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)


# ---- data for daemon tests ----------------------------------------------------------------

SECRET = "daemon-test-secret-0123456789"


def seed_due_deliveries(database_url: str, count: int) -> dict[str, str]:
    """A migrated database with the seed papers, `count` active subscribers and one planned
    delivery each (real planning, forced to the current period); returns Message-ID → email."""
    from datetime import timedelta

    from sqlmodel import select

    from digestd.core.config import Settings
    from digestd.core.context import AppContext
    from digestd.core.db import session_scope
    from digestd.core.models import Delivery, Subscriber, utcnow
    from digestd.delivery.planning import plan_due
    from tests.support.digests import load_seed_entries

    ctx = AppContext(Settings(database_url=database_url, secret_key=SECRET), actor="test")
    try:
        ctx.migrate()
        now = utcnow()
        with session_scope(ctx.engine) as session:
            load_seed_entries(session, now - timedelta(hours=1))
            session.add_all(
                Subscriber(
                    email=f"reader{i:05d}@example.org",
                    status="active",
                    created_at=now,
                    confirmed_at=now,
                    max_items=5,
                )
                for i in range(count)
            )
        report = plan_due(ctx, force=True)
        assert report.planned == count, report
        with session_scope(ctx.engine) as session:
            rows = session.execute(
                select(Delivery.message_id, Subscriber.email).join(
                    Subscriber, Subscriber.id == Delivery.subscriber_id
                )
            )
            return {message_id: email for message_id, email in rows}
    finally:
        ctx.dispose()


def delivery_statuses(database_url: str) -> dict[str, int]:
    """How many deliveries are in each status right now (read from the real database)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT status, COUNT(*) FROM delivery GROUP BY status"))
            return {status: int(n) for status, n in rows}
    finally:
        engine.dispose()


def expire_leases(database_url: str) -> int:
    """Time passes for the claims: every lease held now ends a minute ago (what waiting out
    DIGESTD_LEASE_SECONDS would do, without the wait); returns how many."""
    from datetime import timedelta

    from sqlalchemy import update

    from digestd.core.db import make_engine, session_scope
    from digestd.core.models import Delivery, utcnow

    engine = make_engine(database_url)
    try:
        with session_scope(engine) as session:
            result = session.execute(
                update(Delivery)
                .where(Delivery.status == "sending")  # type: ignore[arg-type]
                .values(lease_until=utcnow() - timedelta(minutes=1))
            )
            return int(result.rowcount)  # type: ignore[attr-defined]
    finally:
        engine.dispose()


def daemon_env(database_url: str, smtp_port: int, **extra: str) -> dict[str, str]:
    """The environment of a test daemon: this database, the test SMTP server, a random web port."""
    env = {
        "DIGESTD_DATABASE_URL": database_url,
        "DIGESTD_SECRET_KEY": SECRET,
        "DIGESTD_SMTP_HOST": "127.0.0.1",
        "DIGESTD_SMTP_PORT": str(smtp_port),
        "DIGESTD_LISTEN": "127.0.0.1:0",
        "DIGESTD_BASE_URL": "http://127.0.0.1:8025",
        "DIGESTD_LOG_LEVEL": "info",
    }
    env.update(extra)
    return env
