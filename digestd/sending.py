"""Sending what the outbox holds: claim a batch, select and render once per profile,
personalize per subscriber, send over one shared SMTP pool, record the batch's results.

Memory is bounded by the batch size (DIGESTD_BATCH_SIZE), database work is a few
statements per batch (never one per subscriber), and SMTP concurrency equals the pool size.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import select

from digestd.context import AppContext
from digestd.db import session_scope
from digestd.mailer import (
    PermanentSendError,
    SmtpPool,
    TemporarySendError,
    build_digest_message,
    one_line,
)
from digestd.models import Subscriber
from digestd.outbox import Claim, Outcome, claim_batch, record_outcomes, release_expired
from digestd.outbox import temporary_failure as _temporary
from digestd.render import DigestBody, Renderer, TemplateProblem
from digestd.select import Pick, Profile, Selector, sent_entry_ids
from digestd.tokens import link

log = logging.getLogger(__name__)

EMPTY_REASON = "empty digest: no new papers matched in this window"


class StopSignal(Protocol):
    def is_set(self) -> bool: ...


@dataclass
class SendReport:
    """What one `send_due` pass did."""

    claimed: int = 0
    sent: int = 0
    retry: int = 0
    failed: int = 0
    skipped: int = 0
    released: int = 0  # expired leases of dead workers handed back before sending
    bounced: int = 0  # subscribers newly marked bounced
    renders: int = 0  # digest bodies rendered (per profile and paper list, not per subscriber)
    problem: str | None = None  # the first retry/failure reason, so an admin sees why

    def add(self, outcomes: list[Outcome]) -> None:
        for o in outcomes:
            if o.status in ("sent", "retry", "failed", "skipped"):
                setattr(self, o.status, getattr(self, o.status) + 1)
            if o.status in ("retry", "failed") and o.error and self.problem is None:
                self.problem = o.error


@dataclass
class _Job:
    claim: Claim
    sub: Subscriber
    body: DigestBody


def _short(exc: BaseException) -> str:
    text = one_line(str(exc)) or type(exc).__name__
    return text[:500]


# Rendered bodies are kept for a whole send pass, not one batch: subscribers of one profile
# are spread over many claim batches, and a per-batch cache rendered ~9x too often in
# benchmarks/bench_delivery.py (1000 profiles, batches of 500). Bounded (LRU) for memory.
BODY_CACHE_SIZE = 1024
BodyCache = OrderedDict[tuple[str, str, tuple[int, ...]], DigestBody]


def _prepare(
    ctx: AppContext,
    renderer: Renderer,
    claims: list[Claim],
    report: SendReport,
    bodies: BodyCache | None = None,
    loaded: list[tuple[datetime, datetime, Selector]] | None = None,
) -> tuple[list[_Job], list[Outcome]]:
    """Load the batch's subscribers, select per profile and render once per distinct digest."""
    done: list[Outcome] = []
    jobs: list[_Job] = []
    with session_scope(ctx.engine) as session:
        ids = sorted({c.subscriber_id for c in claims})
        subs = {
            s.id: s
            for s in session.scalars(select(Subscriber).where(Subscriber.id.in_(ids)))  # type: ignore[union-attr]
        }
        wanted: list[tuple[Claim, Subscriber, Profile]] = []
        for c in claims:
            sub = subs.get(c.subscriber_id)
            if sub is None or sub.status != "active":
                # Unsubscribed or bounced after planning: never mail them.
                status = sub.status if sub is not None else "gone"
                done.append(Outcome(c, "skipped", f"subscriber is {status}"))
                continue
            wanted.append((c, sub, Profile.for_subscriber(sub, c.window_start, c.window_end)))
        if not wanted:
            return jobs, done
        start = min(p.window_start for _, _, p in wanted)
        end = max(p.window_end for _, _, p in wanted)
        # One load of the entries for the whole batch; the selector memoizes equal
        # (profile, already-sent) inputs, so subscribers sharing a profile share the ranking.
        # Deliveries planned in one pass share their window end, so consecutive batches can
        # reuse the entries already loaded (a selector ranks each profile over its own
        # window, so one loaded over a wider range gives the same answer). Only the
        # latest is kept.
        loaded = [] if loaded is None else loaded
        if loaded and loaded[0][0] <= start and end <= loaded[0][1]:
            selector = loaded[0][2]
        else:
            selector = Selector.load(session, start, end)
            loaded[:] = [(start, end, selector)]
        history = sent_entry_ids(session, [s.id for _, s, _ in wanted], since=start)  # type: ignore[misc]
        picks_of: list[list[Pick]] = [
            selector.select(p, history.get(s.id, frozenset()))  # type: ignore[arg-type]
            for _, s, p in wanted
        ]
    bodies = OrderedDict() if bodies is None else bodies
    for (c, sub, profile), picks in zip(wanted, picks_of, strict=True):
        if not picks:
            done.append(Outcome(c, "skipped", EMPTY_REASON))
            continue
        key = (profile.key, sub.format, tuple(p.entry.id or 0 for p in picks))
        body = bodies.get(key)
        if body is not None:
            bodies.move_to_end(key)
        if body is None:
            try:
                body = renderer.render_digest(profile, picks, when=c.window_end, fmt=sub.format)
            except TemplateProblem as exc:  # an admin's template: one line, retried later
                log.error("render failed for delivery %s: %s", c.id, exc)
                done.append(_temporary(c, f"render failed: {_short(exc)}"))
                continue
            except Exception as exc:  # a template error must not lose the batch
                log.exception("render failed for delivery %s", c.id)
                done.append(_temporary(c, f"render failed: {_short(exc)}"))
                continue
            bodies[key] = body
            if len(bodies) > BODY_CACHE_SIZE:
                bodies.popitem(last=False)
            report.renders += 1
        jobs.append(_Job(c, sub, body))
    return jobs, done


async def _send_jobs(
    ctx: AppContext,
    pool: SmtpPool,
    renderer: Renderer,
    jobs: list[_Job],
    stop: StopSignal | None,
    outcomes: list[Outcome],
) -> None:
    """Personalize and send with `pool.size` concurrent senders; appends one Outcome per job
    to `outcomes` as each finishes (so a cancelled pass still knows what was sent)."""
    s = ctx.settings
    secret = ctx.secret_key
    now = ctx.now()
    queue: Iterator[_Job] = iter(jobs)

    async def sender() -> None:
        # All senders share one iterator: asyncio runs one at a time between awaits.
        for job in queue:
            c, sub = job.claim, job.sub
            if stop is not None and stop.is_set():
                # Not attempted: hand it straight back instead of holding it to lease expiry.
                outcomes.append(Outcome(c, "pending", None))
                continue
            try:
                unsubscribe = link(s.base_url, secret, "unsubscribe", sub.id, sub.token_version)  # type: ignore[arg-type]
                preferences = link(s.base_url, secret, "preferences", sub.id, sub.token_version)  # type: ignore[arg-type]
                personal = renderer.personalize(
                    job.body,
                    email=sub.email,
                    unsubscribe_url=unsubscribe,
                    preferences_url=preferences,
                )
                message = build_digest_message(
                    sender=s.from_address,
                    to_email=sub.email,
                    to_name=sub.name,
                    subject=personal.subject,
                    text=personal.text,
                    html=personal.html,
                    message_id=c.message_id,
                    unsubscribe_url=unsubscribe,
                    when=now,
                )
                await pool.send(message)
            except PermanentSendError as exc:
                reply = f"{exc.code} {exc.reply}" if exc.code else exc.reply
                outcomes.append(
                    Outcome(c, "failed", one_line(reply), bad_address=exc.is_bad_address)
                )
            except TemporarySendError as exc:
                outcomes.append(_temporary(c, one_line(exc.reply) or "temporary failure"))
            except Exception as exc:  # a bad address format, an encoding error: keep going
                log.exception("sending delivery %s failed", c.id)
                outcomes.append(_temporary(c, f"error: {_short(exc)}"))
            else:
                outcomes.append(Outcome(c, "sent", None, entry_ids=job.body.entry_ids))

    await asyncio.gather(*(sender() for _ in range(max(1, min(pool.size, len(jobs))))))


async def send_due(
    ctx: AppContext,
    *,
    worker_id: str,
    stop: StopSignal | None = None,
    pool: SmtpPool | None = None,
    limit: int | None = None,
) -> SendReport:
    """Send every delivery that is due, batch by batch, until none is left or `stop` is set.

    Terminates: each claimed row leaves the claimable set (sent, failed, skipped, or retry
    with a later `next_attempt_at`) before the next claim.
    """
    report = SendReport()
    renderer = Renderer(ctx.settings)
    bodies: BodyCache = OrderedDict()
    loaded: list[tuple[datetime, datetime, Selector]] = []
    owned = pool is None
    smtp = pool or SmtpPool(ctx.settings)
    batch = limit or ctx.settings.batch_size
    try:
        with session_scope(ctx.engine) as session:
            report.released = release_expired(session, ctx.now())
        while stop is None or not stop.is_set():
            now: datetime = ctx.now()
            with session_scope(ctx.engine) as session:
                claims = claim_batch(
                    session,
                    worker_id=worker_id,
                    limit=batch,
                    now=now,
                    lease_seconds=ctx.settings.lease_seconds,
                )
            if not claims:
                break
            report.claimed += len(claims)
            jobs, outcomes = await asyncio.to_thread(
                _prepare, ctx, renderer, claims, report, bodies, loaded
            )
            try:
                await _send_jobs(ctx, smtp, renderer, jobs, stop, outcomes)
            except asyncio.CancelledError:
                # Cancelled mid-batch (a hard stop): record what the server already accepted
                # before giving up, so it is not sent again; the rest stays `sending` under
                # this worker until released (at once by a graceful stop, or lease expiry).
                with session_scope(ctx.engine) as session:
                    record_outcomes(
                        session, outcomes, worker_id=worker_id, now=ctx.now(), actor=ctx.actor
                    )
                raise
            with session_scope(ctx.engine) as session:
                bounced = record_outcomes(
                    session, outcomes, worker_id=worker_id, now=ctx.now(), actor=ctx.actor
                )
            report.add(outcomes)
            report.bounced += len(bounced)
    finally:
        if owned:
            await smtp.close()
    return report
