"""Orchestration: fetch sources concurrently, parse off the event loop, store each source
in its own transaction, and record every source's health. Entry point for CLI and daemon."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy.exc import IntegrityError, OperationalError

from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Source
from digestd.ingest import sources as source_service
from digestd.ingest.detect import parse_document
from digestd.ingest.fetch import Fetched, FetchError, fetch, make_client
from digestd.ingest.normalize import Rejected, normalize
from digestd.ingest.store import upsert_entries
from digestd.ingest.types import FetchReport, NormalizedEntry, ParseResult

log = logging.getLogger(__name__)

# progress(done, total, report) after each source finishes.
Progress = Callable[[int, int, FetchReport], None]
STORE_ATTEMPTS = 3  # a concurrent writer (another replica) may insert the same paper first
MAX_REASONS = 20


@dataclass(frozen=True)
class _Job:
    """What a fetch needs from the Source row, read once so no session spans the network."""

    id: int
    url: str
    name: str
    kind: str
    etag: str | None
    last_modified: str | None
    allow_private: bool


def _job(source: Source, *, conditional: bool) -> _Job:
    return _Job(
        id=source.id or 0,
        url=source.url,
        name=source.name,
        kind=source.kind,
        etag=source.etag if conditional else None,
        last_modified=source.last_modified if conditional else None,
        allow_private=source.allow_private,
    )


async def fetch_sources(
    ctx: AppContext,
    source_ids: Sequence[int] | None = None,
    *,
    only_due: bool = False,
    progress: Progress | None = None,
    conditional: bool = True,
) -> list[FetchReport]:
    """Fetch the given (or all enabled, or all due) sources; one report per source, by id.

    Raises `InvalidSource` for unknown ids, before anything is fetched. A failing source
    never stops the others: its failure is its report.
    """
    with session_scope(ctx.engine) as session:
        if source_ids:
            rows = source_service.get_sources(session, source_ids)
        elif only_due:
            rows = source_service.due_sources(session, ctx.now())
        else:
            rows = source_service.enabled_sources(session)
        jobs = [_job(s, conditional=conditional) for s in rows]
    if not jobs:
        return []
    limit = asyncio.Semaphore(ctx.settings.fetch_concurrency)
    # One writer at a time from this process: SQLite has a single writer anyway, and it
    # keeps two sources carrying the same paper from racing to insert it.
    write_lock = asyncio.Lock()
    reports: list[FetchReport] = []
    async with contextlib.AsyncExitStack() as stack:
        # One client for public-only sources, one for those allowed private addresses.
        clients = {
            allowed: await stack.enter_async_context(
                make_client(ctx.settings, allow_private=allowed)
            )
            for allowed in sorted({job.allow_private for job in jobs})
        }

        async def one(job: _Job) -> FetchReport:
            async with limit:
                return await _run_one(ctx, clients[job.allow_private], job, write_lock)

        tasks = [asyncio.create_task(one(job)) for job in jobs]
        for done in asyncio.as_completed(tasks):
            report = await done
            reports.append(report)
            ctx.metrics.fetched(report.source_id, report.status)
            if progress is not None:
                progress(len(reports), len(jobs), report)
    return sorted(reports, key=lambda r: r.source_id)


async def ingest_file(ctx: AppContext, path_or_url: str) -> FetchReport:
    """Ingest one local file or URL now (adding it as a source if needed), e.g. demo seeds."""
    with session_scope(ctx.engine) as session:
        source = source_service.ensure_source(session, path_or_url, now=ctx.now())
        source_id = source.id or 0
    [report] = await fetch_sources(ctx, [source_id], conditional=False)
    return report


async def _run_one(
    ctx: AppContext, client: httpx.AsyncClient, job: _Job, write_lock: asyncio.Lock
) -> FetchReport:
    started = time.perf_counter()

    def elapsed() -> int:
        return int((time.perf_counter() - started) * 1000)

    async def save(write: Callable[..., FetchReport], *args: Any) -> FetchReport:
        # Every write of this job goes through the shared lock (one writer), off the loop.
        async with write_lock:
            return await asyncio.to_thread(write, ctx, job, *args)

    async def failed(error: str) -> FetchReport:
        return await save(_save_failure, error, elapsed())

    try:
        fetched = await fetch(
            client,
            job.url,
            settings=ctx.settings,
            etag=job.etag,
            last_modified=job.last_modified,
            allow_local=job.allow_private,
        )
    except FetchError as exc:
        return await failed(str(exc))
    except Exception as exc:  # an unexpected bug must still end up as this source's failure
        log.exception("fetching source %s failed", job.id)
        return await failed(f"internal error: {type(exc).__name__}: {exc}")
    if fetched.not_modified:
        return await save(_save_not_modified, fetched, elapsed())
    try:
        parsed, entries, rejected = await asyncio.to_thread(_parse, ctx, job, fetched)
    except Exception as exc:  # parsers are defensive; this is the last line of defence
        log.exception("parsing source %s failed", job.id)
        return await failed(f"could not parse: {type(exc).__name__}")
    if parsed.error:
        return await failed(parsed.error)
    return await save(_save_entries, fetched, parsed, entries, rejected, started)


def _parse(
    ctx: AppContext, job: _Job, fetched: Fetched
) -> tuple[ParseResult, list[NormalizedEntry], list[str]]:
    parsed = parse_document(fetched.body, fetched.headers, job.kind)
    now = ctx.now()
    entries: list[NormalizedEntry] = []
    rejected = list(parsed.rejected)
    for n, item in enumerate(parsed.items, 1):
        try:
            entries.append(normalize(item, now))
        except Rejected as exc:
            rejected.append(f"item {n}: {exc}")
    return parsed, entries, rejected


def _save_entries(
    ctx: AppContext,
    job: _Job,
    fetched: Fetched,
    parsed: ParseResult,
    entries: list[NormalizedEntry],
    rejected: list[str],
    started: float,
) -> FetchReport:
    notes = ([parsed.warning] if parsed.warning else []) + rejected
    status = "partial" if notes else "ok"
    note = None
    if notes:
        shown = "; ".join(notes[:MAX_REASONS])
        more = f" (+{len(notes) - MAX_REASONS} more)" if len(notes) > MAX_REASONS else ""
        note = f"{len(rejected)} rejected: {shown}{more}" if rejected else shown + more
    for attempt in range(1, STORE_ATTEMPTS + 1):
        try:
            with session_scope(ctx.engine) as session:
                source = session.get(Source, job.id)
                if source is None:  # removed while we were fetching
                    return FetchReport(job.id, job.url, job.name, "error", error="source removed")
                now = ctx.now()
                max_age = timedelta(days=ctx.settings.paper_max_age_days)
                counts = upsert_entries(session, job.id, entries, now, max_age)
                duration = int((time.perf_counter() - started) * 1000)
                source_service.record_success(
                    source,
                    status=status,
                    now=now,
                    counts=counts.as_dict(len(rejected)),
                    duration_ms=duration,
                    default_interval_minutes=ctx.settings.fetch_interval_minutes,
                    etag=fetched.etag,
                    last_modified=fetched.last_modified,
                    note=note,
                    fmt=parsed.kind,
                )
                return FetchReport(
                    source_id=job.id,
                    url=job.url,
                    name=job.name,
                    status=status,
                    kind=parsed.kind,
                    new=counts.new,
                    updated=counts.updated,
                    unchanged=counts.unchanged,
                    rejected=len(rejected),
                    duration_ms=duration,
                    bytes=len(fetched.body),
                    note=note,
                    reasons=notes,
                    next_fetch_at=source.next_fetch_at,
                )
        except (IntegrityError, OperationalError) as exc:
            # Another writer stored some of these papers first (or held the lock too long):
            # the transaction rolled back, so nothing half-written remains; try again.
            if attempt == STORE_ATTEMPTS:
                message = f"could not store entries: {str(exc).splitlines()[0][:200]}"
                return _save_failure(ctx, job, message, int((time.perf_counter() - started) * 1000))
    raise AssertionError("unreachable")


def _save_not_modified(ctx: AppContext, job: _Job, fetched: Fetched, duration: int) -> FetchReport:
    with session_scope(ctx.engine) as session:
        source = session.get(Source, job.id)
        if source is None:
            return FetchReport(job.id, job.url, job.name, "error", error="source removed")
        source_service.record_success(
            source,
            status="not_modified",
            now=ctx.now(),
            counts={"new": 0, "updated": 0, "unchanged": 0, "rejected": 0},
            duration_ms=duration,
            default_interval_minutes=ctx.settings.fetch_interval_minutes,
            etag=fetched.etag or job.etag,
            last_modified=fetched.last_modified or job.last_modified,
        )
        return FetchReport(
            source_id=job.id,
            url=job.url,
            name=job.name,
            status="not_modified",
            duration_ms=duration,
            next_fetch_at=source.next_fetch_at,
        )


def _save_failure(ctx: AppContext, job: _Job, error: str, duration: int) -> FetchReport:
    # Only the source's health row changes: its earlier entries stay exactly as they were.
    error = " ".join(error.split())[:500]
    with session_scope(ctx.engine) as session:
        source = session.get(Source, job.id)
        next_at = None
        if source is not None:
            source_service.record_failure(
                source,
                now=ctx.now(),
                error=error,
                duration_ms=duration,
                default_interval_minutes=ctx.settings.fetch_interval_minutes,
            )
            next_at = source.next_fetch_at
    return FetchReport(
        source_id=job.id,
        url=job.url,
        name=job.name,
        status="error",
        duration_ms=duration,
        error=error,
        next_fetch_at=next_at,
    )
