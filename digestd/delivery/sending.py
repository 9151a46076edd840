"""Sending the due deliveries: claim a batch (`deliveries.claim`), select and render once per
profile (and build its MIME once), fill in each subscriber's values, send over one shared
SMTP pool, and record each outcome soon after the server's reply, in bounded group commits
(`recorder.Recorder`). The next batch is claimed and prepared in a worker thread while one
is on the wire.

Memory is bounded by the batch size (DIGESTD_BATCH_SIZE, two batches in hand) and the
digest cache; database work is a few statements per batch and per group commit (never one
per subscriber), and SMTP concurrency equals the pool size.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from email.message import EmailMessage
from typing import Any, Protocol

from digestd.core.context import AppContext
from digestd.core.db import read_scope, refresh_statistics, session_scope
from digestd.core.models import Delivery, Entry, Vote, table_of
from digestd.core.statuses import DeliveryStatus, SubscriberStatus
from digestd.core.tokens import links, view_url, vote_macs
from digestd.delivery import deliveries
from digestd.delivery.deliveries import Claim, Outcome
from digestd.delivery.deliveries import temporary_failure as _temporary
from digestd.delivery.digests import local_day
from digestd.delivery.failures import INTERNAL, RENDER, ours, send_failed
from digestd.delivery.recorder import Recorder
from digestd.inbound import addresses
from digestd.mail.mime import (
    DigestTemplate,
    SlotPart,
    build_digest_message,
    build_digest_template,
    format_date,
    one_line,
)
from digestd.mail.render import Renderer, TemplateProblem, slot_values, vote_slots
from digestd.mail.smtp_pool import SendError, SmtpPool
from digestd.ranking.learning import PaperCache
from digestd.ranking.select import Pick, Profile, Selector, Taste, load_tastes
from digestd.subscribers import lifecycle as subscribers

log = logging.getLogger(__name__)

D = DeliveryStatus
# The signed links each digest carries: "view" is completed with the period per message;
# "vote" is the token its vote links share.
LINK_PURPOSES = ("unsubscribe", "preferences", "view", "vote")
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
    # The most messages on the wire or accepted but not yet recorded at once: what a crash at
    # the worst moment of this pass would have sent again (at most recorder.UNRECORDED_MAX).
    unrecorded_peak: int = 0
    problem: str | None = None  # the first retry/failure reason, so an admin sees why

    def add(self, outcomes: Sequence[Outcome]) -> None:
        """Count recorded outcomes; keep the first retry/failure reason."""
        for o in outcomes:
            if o.status == D.SENT:
                self.sent += 1
            elif o.status == D.RETRY:
                self.retry += 1
            elif o.status == D.FAILED:
                self.failed += 1
            elif o.status == D.SKIPPED:
                self.skipped += 1
            if o.status in (D.RETRY, D.FAILED) and o.error and self.problem is None:
                self.problem = o.error


@dataclass(frozen=True)
class _Digest:
    """One rendered digest ready to send: its message with holes for the subscriber's values
    (built once, see mime.DigestTemplate), and what is needed to render it again for the
    rare subscriber the fast path declines (a non-ASCII address)."""

    template: DigestTemplate
    entry_ids: tuple[int, ...]
    vote_slots: tuple[str, ...]  # the vote-MAC slot names, in tokens.vote_macs order
    profile: Profile
    picks: tuple[Pick, ...]
    day: date  # the subscriber's local date, in the subject
    fmt: str


@dataclass
class _Job:
    claim: Claim
    sub: Any  # a Core row of subscribers.SEND_COLUMNS (no ORM objects in the hot loop)
    digest: _Digest


@dataclass
class _Batch:
    """One claimed batch: jobs to send, and outcomes decided already (then the sends')."""

    claims: list[Claim]
    jobs: list[_Job] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)


def _ids(claim: Claim) -> dict[str, int]:
    """Log fields naming a delivery and its subscriber (ids, never the address)."""
    return {"delivery_id": claim.id, "subscriber_id": claim.subscriber_id}


def _short(exc: BaseException) -> str:
    text = one_line(str(exc)) or type(exc).__name__
    return text[:500]


# Rendered digests are kept for a whole send pass, not one batch: subscribers of one profile
# are spread over many claim batches, and a per-batch cache rendered ~9x too often in
# benchmarks/bench_delivery.py (1000 profiles, batches of 500). Bounded (LRU) for memory;
# an entry holds only the message template (≈ the message's size), not the rendered text.
# The key holds the reasons: a subscriber ranked by their votes may get the same papers as
# their profile with other reasons, and must not be sent the profile's.
BODY_CACHE_SIZE = 1024
# Keyed by profile, format, local date (subscribers of one profile in two time zones may be
# on different days) and the papers with their reasons.
BodyCache = OrderedDict[tuple[str, str, date, tuple[tuple[int, str], ...]], _Digest]


def _digest(
    ctx: AppContext,
    renderer: Renderer,
    profile: Profile,
    picks: list[Pick],
    day: date,
    fmt: str,
) -> _Digest:
    body = renderer.render_digest(profile, picks, day=day, fmt=fmt)
    template = build_digest_template(
        sender=ctx.settings.from_address,
        subject=body.subject,
        parts=[SlotPart(subtype, parts) for subtype, parts in body.slot_parts()],
        list_headers=addresses.list_headers(ctx.settings),
    )
    return _Digest(
        template, body.entry_ids, vote_slots(body.entry_ids), profile, tuple(picks), day, fmt
    )


PROFILE_CACHE_SIZE = 4096  # distinct preference profiles kept by a pass (a few hundred bytes each)


@dataclass
class _PassCache:
    """What one send pass keeps from batch to batch, each part bounded."""

    bodies: BodyCache = field(default_factory=OrderedDict)
    # The latest loaded selector and the window it covers (see _prepare).
    loaded: list[tuple[datetime, datetime, Selector]] = field(default_factory=list)
    papers: PaperCache = field(default_factory=PaperCache)  # voted papers' text, read once
    # Equal preferences share one Profile, and its key (a hash) is computed once per pass.
    profiles: dict[tuple[Any, ...], Profile] = field(default_factory=dict)
    claims: int = 0  # claims made, for the statistics check every STATS_EVERY


# The tables the per-batch queries read; on PostgreSQL their statistics are checked when a
# pass starts and every STATS_EVERY claims, as a long pass changes a delivery row a
# message (db.refresh_statistics: one catalog query unless something is stale).
SENDING_TABLES = tuple(table_of(m).name for m in (Delivery, Entry, Vote))
STATS_EVERY = 20


def _prepare(
    ctx: AppContext,
    renderer: Renderer,
    claims: list[Claim],
    report: SendReport,
    cache: _PassCache | None = None,
) -> _Batch:
    """Load the batch's subscribers, select per profile and render once per distinct digest."""
    cache = cache or _PassCache()
    bodies, loaded, profiles = cache.bodies, cache.loaded, cache.profiles
    batch = _Batch(claims)
    done = batch.outcomes
    # Reads only, so a read transaction: on SQLite a plain BEGIN that takes no write lock.
    # Under `session_scope` (BEGIN IMMEDIATE) the lock was held through the batch's
    # selection, and the recorder's group commits waited for it: sending stalled on the
    # unrecorded bound (recorder.UNRECORDED_MAX) while the next batch was prepared.
    with read_scope(ctx.engine) as session:
        subs = subscribers.for_sending(session, (c.subscriber_id for c in claims))
        wanted: list[tuple[Claim, Any, Profile]] = []
        if len(profiles) > PROFILE_CACHE_SIZE:
            profiles.clear()
        for c in claims:
            sub = subs.get(c.subscriber_id)
            if sub is None or sub.status != SubscriberStatus.ACTIVE:
                # Unsubscribed or bounced after planning: never mail them.
                status = sub.status if sub is not None else "gone"
                done.append(Outcome(c, D.SKIPPED, f"subscriber is {status}"))
                continue
            cats = sub.categories
            pkey = (
                str(sub.topics),
                tuple(cats) if isinstance(cats, list) else cats,
                sub.max_items,
                c.window_start,
                c.window_end,
            )
            profile = profiles.get(pkey)
            if profile is None:
                profile = profiles[pkey] = Profile.for_subscriber(sub, c.window_start, c.window_end)
            wanted.append((c, sub, profile))
        if not wanted:
            return batch
        start = min(p.window_start for _, _, p in wanted)
        end = max(p.window_end for _, _, p in wanted)
        # One load of the entries for the whole batch; the selector memoizes equal
        # (profile, already-sent) inputs, so subscribers sharing a profile share the ranking.
        # Deliveries planned in one pass share their window end, so consecutive batches can
        # reuse the entries already loaded (a selector ranks each profile over its own
        # window, so one loaded over a wider range gives the same answer). Only the
        # latest is kept.
        if loaded and loaded[0][0] <= start and end <= loaded[0][1]:
            selector = loaded[0][2]
        else:
            selector = Selector.load(session, start, end)
            loaded[:] = [(start, end, selector)]
        history = deliveries.sent_entry_ids(session, [s.id for _, s, _ in wanted], since=start)
        # Votes of the batch's subscribers in one query; those without keep sharing their
        # profile's memoized ranking, those with votes are ranked individually.
        tastes: dict[int, Taste] = load_tastes(
            session, [s.id for _, s, _ in wanted], cache.papers, ctx.now()
        )
        picks_of: list[list[Pick]] = [
            selector.select(p, history.get(s.id, frozenset()), tastes.get(s.id))
            for _, s, p in wanted
        ]
        voters = set(tastes)
    for (c, sub, profile), picks in zip(wanted, picks_of, strict=True):
        if not picks:
            done.append(Outcome(c, D.SKIPPED, EMPTY_REASON))
            continue
        day = local_day(c.window_end, sub.timezone)
        key = (profile.key, sub.format, day, tuple((p.entry.id or 0, p.reason) for p in picks))
        digest = bodies.get(key)
        if digest is not None:
            bodies.move_to_end(key)
        else:
            try:
                digest = _digest(ctx, renderer, profile, picks, day, sub.format)
            except TemplateProblem as exc:  # an admin's template: one line, retried later
                log.error("render failed for delivery %s: %s", c.id, exc, extra=_ids(c))
                done.append(_temporary(c, f"render failed: {_short(exc)}", ours(RENDER)))
                continue
            except Exception as exc:  # a template error must not lose the batch
                log.exception("render failed for delivery %s", c.id, extra=_ids(c))
                done.append(_temporary(c, f"render failed: {_short(exc)}", ours(RENDER)))
                continue
            # A digest ranked by one subscriber's votes is theirs alone: kept out of the
            # pass's cache so it does not push out the digests profiles share.
            if sub.id not in voters:
                bodies[key] = digest
                if len(bodies) > BODY_CACHE_SIZE:
                    bodies.popitem(last=False)
            report.renders += 1
        batch.jobs.append(_Job(c, sub, digest))
    return batch


def _reference_message(
    ctx: AppContext,
    renderer: Renderer,
    job: _Job,
    urls: tuple[str, str, str, str],
    macs: list[str],
    when: datetime,
) -> EmailMessage:
    """The message built by the email package from a fresh render: for what the fast path
    declines (a non-ASCII address needs SMTPUTF8, which `send_message` negotiates)."""
    d, sub = job.digest, job.sub
    body = renderer.render_digest(d.profile, list(d.picks), day=d.day, fmt=d.fmt)
    unsubscribe, preferences, view, vote = urls
    personal = renderer.personalize(
        body,
        email=sub.email,
        unsubscribe_url=unsubscribe,
        preferences_url=preferences,
        view_url=view,
        vote_url=vote,
        vote_macs=macs,
    )
    s, secret = ctx.settings, ctx.secret_key
    return build_digest_message(
        mailto=addresses.unsubscribe_mailto(s, secret, sub.id, sub.token_version),
        list_headers=addresses.list_headers(s),
        sender=ctx.settings.from_address,
        to_email=sub.email,
        to_name=sub.name or "",
        subject=personal.subject,
        text=personal.text,
        html=personal.html,
        message_id=job.claim.message_id,
        unsubscribe_url=unsubscribe,
        when=when,
    )


async def _send_jobs(
    ctx: AppContext,
    pool: SmtpPool,
    renderer: Renderer,
    jobs: list[_Job],
    stop: StopSignal | None,
    recorder: Recorder,
    keep_leases: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Personalize and send with twice `pool.size` senders (while a connection carries one
    message, another sender personalizes the next and waits for a free connection); each
    outcome goes to the recorder as soon as the server answered (committed within a bounded
    group)."""
    s = ctx.settings
    secret = ctx.secret_key
    now = ctx.now()
    date = format_date(now)  # one Date per batch: formatting it per message costs as much
    queue: Iterator[_Job] = iter(jobs)

    async def sender() -> None:
        # All senders share one iterator: asyncio runs one at a time between awaits.
        for job in queue:
            c, sub = job.claim, job.sub
            if stop is not None and stop.is_set():
                # Not attempted: hand it straight back instead of holding it to lease expiry.
                recorder.add(Outcome(c, D.PENDING, None), credit=False)
                continue
            if keep_leases is not None:
                await keep_leases()  # renewed when due (send_due)
            # At most recorder.UNRECORDED_MAX messages on the wire or accepted-but-unrecorded:
            # the most a crash can re-send.
            await recorder.before_send()
            outcome: Outcome
            try:
                unsubscribe, preferences, view, vote = links(
                    s.base_url, secret, LINK_PURPOSES, sub.id, sub.token_version
                )
                view = view_url(view, c.period)
                digest = job.digest
                macs = vote_macs(secret, vote.rpartition("/")[2], digest.entry_ids)
                template = digest.template
                # Bounces name their delivery (VERP); the mailto: unsubscribes this subscriber.
                envelope = addresses.envelope_sender(s, secret, c.id, template.sender)
                mailto = addresses.unsubscribe_mailto(s, secret, sub.id, sub.token_version)
                data = template.fill(
                    to_email=sub.email,
                    to_name=sub.name or "",
                    message_id=c.message_id,
                    unsubscribe_url=unsubscribe,
                    date=date,
                    values=slot_values(
                        email=sub.email,
                        unsubscribe_url=unsubscribe,
                        preferences_url=preferences,
                        view_url=view,
                        vote_url=vote,
                        vote_macs=dict(zip(digest.vote_slots, macs, strict=True)),
                    ),
                    mailto=mailto,
                    signer=pool.signer,  # DKIM, when DIGESTD_DKIM_KEY_FILE is set
                )
                if data is not None:
                    await pool.send_wire(envelope, one_line(sub.email), data)
                else:
                    message = await asyncio.to_thread(
                        _reference_message,
                        ctx,
                        renderer,
                        job,
                        (unsubscribe, preferences, view, vote),
                        macs,
                        now,
                    )
                    await pool.send(message, sender=envelope)
            except SendError as exc:  # read once, here, into data (delivery.failures)
                outcome = send_failed(c, exc)
            except Exception as exc:  # a bad address format, an encoding error: keep going
                log.exception("sending delivery %s failed", c.id, extra=_ids(c))
                outcome = _temporary(c, f"error: {_short(exc)}", ours(INTERNAL))
            else:
                outcome = Outcome(c, D.SENT, None, entry_ids=job.digest.entry_ids)
            recorder.add(outcome, credit=True)

    await asyncio.gather(*(sender() for _ in range(max(1, min(2 * pool.size, len(jobs))))))


def _claim_and_prepare(
    ctx: AppContext,
    renderer: Renderer,
    report: SendReport,
    cache: _PassCache,
    worker_id: str,
    limit: int,
) -> _Batch | None:
    """Claim the next batch (its own committed transaction) and prepare it; None: none due.
    Runs in a worker thread: the event loop keeps sending (and serving the web) meanwhile."""
    if cache.claims % STATS_EVERY == 0:
        refresh_statistics(ctx.engine, SENDING_TABLES)
    cache.claims += 1
    with session_scope(ctx.engine) as session:
        claims = deliveries.claim(
            session,
            worker_id=worker_id,
            limit=limit,
            now=ctx.now(),
            lease_seconds=ctx.settings.lease_seconds,
        )
    if not claims:
        return None
    return _prepare(ctx, renderer, claims, report, cache)


def _renew(ctx: AppContext, worker_id: str) -> int:
    with session_scope(ctx.engine) as session:
        return deliveries.renew(session, worker_id, ctx.now(), ctx.settings.lease_seconds)


def _renewed(done: asyncio.Future[int]) -> None:
    """A failed renewal is logged, not raised: the pass goes on (the next one may work, and
    the recorder notices a database that went away)."""
    exc = None if done.cancelled() else done.exception()
    if exc is not None:
        log.warning("renewing leases failed: %s", _short(exc))


def _release(ctx: AppContext) -> int:
    with session_scope(ctx.engine) as session:
        return deliveries.release(session, ctx.now())


async def send_due(
    ctx: AppContext,
    *,
    worker_id: str,
    stop: StopSignal | None = None,
    pool: SmtpPool | None = None,
    limit: int | None = None,
    progress: Callable[[SendReport], None] | None = None,
) -> SendReport:
    """Send every delivery that is due, batch by batch, until none is left or `stop` is set.

    `progress(report)` is called after each group of outcomes is recorded (the CLI's bar).

    Pipelined: while batch N is on the wire, batch N+1 is claimed and prepared in a worker
    thread, and outcomes are committed in small groups as the server answers (`Recorder`),
    so database work never blocks the event loop, which the web server shares. Every claimed
    row is recorded (sent, failed, skipped, retry, or handed back as pending when a stop
    came first) or, if the process dies, released when its lease expires; at most
    `recorder.UNRECORDED_MAX` of them can have been accepted by the server by then.

    Terminates: each claimed row leaves the claimable set (`sending`, then sent, failed,
    skipped, or retry with a later `next_attempt_at`) before the next claim.
    """
    report = SendReport()
    started = time.perf_counter()
    renderer = Renderer(ctx.settings)
    cache = _PassCache()
    owned = pool is None
    smtp = pool or SmtpPool(ctx.settings, on_transaction=ctx.metrics.smtp_transaction_done)
    size = limit or ctx.settings.batch_size

    def recorded(outcomes: Sequence[Outcome], bounced: list[int]) -> None:
        report.add(outcomes)
        report.bounced += len(bounced)
        _count(ctx, outcomes)
        if progress is not None:
            progress(report)

    # The pass's database work in its own threads: one claims and prepares the next batch,
    # one commits outcomes, and a third, started only when both are busy, renews leases
    # (senders wait for it, so it must not queue behind them). Not the loop's default
    # executor, which grows to six threads: each thread that allocates gets its own malloc
    # arena, and those arenas kept ≈15 MB more resident (benchmarks/bench_delivery.py).
    threads = ThreadPoolExecutor(max_workers=3, thread_name_prefix="digestd-send")
    loop = asyncio.get_running_loop()
    recorder = Recorder(ctx, worker_id, recorded, threads)

    def stopped() -> bool:
        return stop is not None and stop.is_set()

    # Leases are renewed every third of their length (by the injected clock, checked before
    # each message): a pass can outlast one lease (a slow server, DIGESTD_SMTP_RATE), and a
    # lease that ran out would let housekeeping hand back, and a claim send again, what
    # this pass still holds. Senders wait for a renewal in progress (a few ms every third
    # of a lease), so no message goes out while it could be stale.
    lease = ctx.settings.lease_seconds
    renewed_at = ctx.now()
    renewal: asyncio.Future[int] | None = None

    async def keep_leases() -> None:
        nonlocal renewed_at, renewal
        if renewal is None or renewal.done():
            now = ctx.now()
            if (now - renewed_at).total_seconds() * 3 < lease:
                return
            renewed_at = now
            renewal = loop.run_in_executor(threads, _renew, ctx, worker_id)
            renewal.add_done_callback(_renewed)
        with contextlib.suppress(Exception):  # logged by _renewed; the pass goes on
            await asyncio.shield(renewal)

    def claim_next() -> asyncio.Task[_Batch | None]:
        return asyncio.ensure_future(
            loop.run_in_executor(
                threads,
                _claim_and_prepare,
                ctx,
                renderer,
                report,
                cache,
                worker_id,
                size,
            )
        )

    # Thread work is awaited through shield(): cancelling this pass must not cancel the
    # wait on a thread that keeps running (a claim), or its result is lost.
    upcoming: asyncio.Task[_Batch | None] | None = None  # claim + prepare of the next batch
    try:
        report.released = await loop.run_in_executor(threads, _release, ctx)
        upcoming = None if stopped() else claim_next()
        while upcoming is not None:
            current = await asyncio.shield(upcoming)
            upcoming = None
            if current is None:
                break
            report.claimed += len(current.claims)
            if not stopped():
                upcoming = claim_next()
            for outcome in current.outcomes:  # decided while preparing (skips, render errors)
                recorder.add(outcome, credit=False)
            await keep_leases()
            await _send_jobs(ctx, smtp, renderer, current.jobs, stop, recorder, keep_leases)
        await recorder.close()
        report.unrecorded_peak = recorder.unrecorded_peak
    except asyncio.CancelledError:
        # A hard stop. What the server already accepted is recorded before giving up, so
        # it is not sent again. The batch's unattempted rest stays `sending` under this
        # worker until released (at once by a graceful stop, or at lease expiry). A batch
        # claimed ahead and not started is handed back at once.
        await _settle(ctx, recorder, upcoming)
        raise
    except BaseException:
        # Not a stop but a failure (say, the database went away): try the same bookkeeping
        # (if it fails too, the leases bring the rows back) and report the failure.
        with contextlib.suppress(Exception):
            await _settle(ctx, recorder, upcoming)
        raise
    finally:
        if owned:
            await smtp.close()
        # Without waiting: after a cancel, a commit or claim may still be running, and its
        # thread ends by itself when done (settle has recorded what it could).
        threads.shutdown(wait=False)
        if report.claimed:
            ctx.metrics.send_pass_done(time.perf_counter() - started)
    return report


def _count(ctx: AppContext, outcomes: Sequence[Outcome]) -> None:
    """Count recorded outcomes on the process's metrics."""
    by_status = Counter(o.status for o in outcomes)
    ctx.metrics.record_sends(
        sent=by_status[D.SENT],
        failed=by_status[D.FAILED],
        retried=by_status[D.RETRY],
        skipped=by_status[D.SKIPPED],
        # Refused for good because of the address (a hard failure; giving up is not a bounce).
        bounced=sum(
            1 for o in outcomes if o.status == D.FAILED and o.failure is not None and o.failure.hard
        ),
    )


async def _settle(
    ctx: AppContext, recorder: Recorder, upcoming: asyncio.Future[_Batch | None] | None
) -> None:
    """Finish the bookkeeping of an interrupted pass (see send_due's except clauses)."""
    if upcoming is not None:
        ahead = None
        with contextlib.suppress(Exception):
            ahead = await upcoming
        if ahead is not None:
            for outcome in ahead.outcomes:
                recorder.add(outcome, credit=False)
            for job in ahead.jobs:
                recorder.add(Outcome(job.claim, D.PENDING, None), credit=False)
    await recorder.settle()
