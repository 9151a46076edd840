"""The embedded demo: seeds in, one digest per demo subscriber out, as `.eml` files.

Runs on a local SQLite file with built-in defaults (no configuration), starts its own SMTP
server on 127.0.0.1 (a random port) that saves what it receives under `./outbox/`, and
sends through the real send-now path: plan (regardless of hour) → select → render →
personalize → SMTP → record.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.paths import data_dir
from digestd.delivery import deliveries
from digestd.delivery.planning import plan_due
from digestd.delivery.sending import send_due

DEFAULT_DB = "digestd-demo.db"
OUTBOX = "outbox"


@dataclass
class DemoRow:
    email: str
    papers: int
    top_paper: str
    status: str


@dataclass
class DemoResult:
    database: Path
    outbox: Path
    rows: list[DemoRow] = field(default_factory=list)
    eml_files: list[Path] = field(default_factory=list)
    html_file: Path | None = None
    reset: bool = False
    new_entries: int = 0
    seconds: float = 0.0


class _SaveToFolder:
    """aiosmtpd handler: every accepted message becomes `NNN-recipient.eml`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.lock = threading.Lock()
        self.saved: list[Path] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
        rcpt = envelope.rcpt_tos[0] if envelope.rcpt_tos else "unknown"
        safe = re.sub(r"[^A-Za-z0-9_.@-]", "_", rcpt)
        with self.lock:
            path = self.folder / f"{len(self.saved) + 1:03d}-{safe}.eml"
            path.write_bytes(data)
            self.saved.append(path)
        return "250 2.0.0 saved"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reset(db: Path, outbox: Path) -> None:
    """Start from scratch: a fresh demo database and no messages of an earlier run."""
    for suffix in ("", "-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    if outbox.is_dir():
        for old in [*outbox.glob("*.eml"), *outbox.glob("*.html")]:
            old.unlink()


def _results(ctx: AppContext) -> list[DemoRow]:
    """One row per demo subscriber: papers in their digest, the top one, the status."""
    with session_scope(ctx.engine) as session:
        latest = deliveries.latest_per_subscriber(session)
    return [
        DemoRow(d.email, d.entry_count, top, d.status if not d.error else f"{d.status}: {d.error}")
        for d, top in latest
    ]


def _write_html(outbox: Path, eml_files: list[Path]) -> Path | None:
    """The HTML part of the first HTML digest, as a file to open in a browser."""
    for path in eml_files:
        msg = message_from_bytes(path.read_bytes(), policy=policy.default)
        part = msg.get_body(("html",))
        if part is not None:
            target = path.with_suffix(".html")
            target.write_text(part.get_content(), encoding="utf-8")
            return target
    return None


async def run_demo(workdir: Path, database: Path | None = None) -> DemoResult:
    """Seed, send one digest to every demo subscriber, and report where the mail went."""
    started = time.perf_counter()
    workdir = workdir.resolve()
    db = (database or workdir / DEFAULT_DB).resolve()
    outbox = workdir / OUTBOX
    reset = database is None
    if reset:
        _reset(db, outbox)
    outbox.mkdir(parents=True, exist_ok=True)

    handler = _SaveToFolder(outbox)
    port = _free_port()
    server = Controller(handler, hostname="127.0.0.1", port=port)
    server.start()
    # Built-in defaults only: the demo must not mail a real server a .env points at.
    settings = Settings(database_url=f"sqlite:///{db}", smtp_host="127.0.0.1", smtp_port=port)
    ctx = AppContext(settings=settings, actor="demo")
    result = DemoResult(database=db, outbox=outbox, reset=reset)
    try:
        await asyncio.to_thread(ctx.migrate)
        seeds = data_dir("seeds")
        await asyncio.to_thread(_import_subscribers, ctx, seeds / "subscribers.csv")
        from digestd.ingest import ingest_file

        report = await ingest_file(ctx, str(seeds / "trending-papers.json"))
        if report.status == "error":
            raise RuntimeError(f"seed feed: {report.error}")
        result.new_entries = report.new
        await asyncio.to_thread(plan_due, ctx, force=True)
        await send_due(ctx, worker_id="demo")
        result.rows = await asyncio.to_thread(_results, ctx)
    finally:
        server.stop()
        ctx.dispose()
    result.eml_files = sorted(handler.saved)
    result.html_file = _write_html(outbox, result.eml_files)
    result.seconds = time.perf_counter() - started
    return result


def _import_subscribers(ctx: AppContext, csv_path: Path) -> None:
    """The demo subscribers, through the same importer as `digestd subscribers import`."""
    from digestd.subscribers.importing import ImportOptions, import_file

    import_file(ctx, csv_path, ImportOptions(update_existing=True))
