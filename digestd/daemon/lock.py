"""One daemon per SQLite file: an fcntl lock on `<db>.lock`, released by the kernel even on
SIGKILL; and the errors that stop a daemon from starting."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from sqlalchemy.engine import make_url


class DaemonStartError(RuntimeError):
    """The daemon cannot start (lock held, address in use…); the message is one line."""


class DaemonAlreadyRunning(DaemonStartError):
    """Another daemon holds the lock of this SQLite database; the message is one line."""


def lock_path_for(database_url: str) -> Path | None:
    """`<db file>.lock` for a SQLite file database; None for PostgreSQL (replicas allowed)."""
    if not database_url.startswith("sqlite"):
        return None
    db = make_url(database_url).database
    if not db or db == ":memory:":
        return None
    return Path(db).expanduser().resolve().with_name(Path(db).name + ".lock")


@contextlib.contextmanager
def single_process_lock(database_url: str) -> Iterator[Path | None]:
    """Hold an exclusive lock for this SQLite file for the daemon's lifetime.

    fcntl.flock is tied to the open file description: the kernel drops it when the
    process exits in any way (SIGKILL included), so a crash never leaves a stale lock.
    """
    path = lock_path_for(database_url)
    if path is None:
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle: IO[str] = open(path, "a+")  # noqa: SIM115 - held open for the lifetime on purpose
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise DaemonAlreadyRunning(
                f"another digestd run (pid {holder}) is already using {path.with_suffix('')}; "
                "SQLite allows one daemon per database file (use PostgreSQL for replicas)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield path
    finally:
        handle.close()  # releases the lock
