"""Claiming and preparing a batch of deliveries: load the batch's subscribers, select per
profile (subscribers who voted, each on their own) and render once per distinct digest
(`compose.build_digest`). Runs in a worker thread of the send pass (`sending.send_due`).

What a pass keeps from batch to batch (`PassCache`) is bounded: rendered digests (LRU), the
latest loaded selector, the voted papers' text and the preference profiles.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from digestd.core.context import AppContext
from digestd.core.db import read_scope, refresh_statistics, session_scope
from digestd.core.models import Delivery, Entry, Vote, table_of
from digestd.core.statuses import DeliveryStatus, MailKind
from digestd.delivery import deliveries
from digestd.delivery.compose import Digest, build_digest, fade_instant
from digestd.delivery.deliveries import Claim, Outcome, temporary_failure
from digestd.delivery.digests import local_day
from digestd.delivery.failures import RENDER, ours
from digestd.ingest.store import entries_by_id
from digestd.mail.mime import one_line
from digestd.mail.render import Renderer, TemplateProblem
from digestd.ranking.learning import PaperCache
from digestd.ranking.select import Pick, Profile, Selector, Taste, load_tastes
from digestd.subscribers import queries as subscribers
from digestd.subscribers.lifecycle import may_mail

# The send pass's logger: its lines read as the pass's wherever the code lives.
log = logging.getLogger("digestd.delivery.sending")

D = DeliveryStatus
EMPTY_REASON = "empty digest: no new papers matched in this window"


@dataclass
class Job:
    """One delivery to send: its claim, its subscriber and the digest it gets."""

    claim: Claim
    sub: subscribers.SendRow  # a Core row (no ORM objects in the hot loop)
    digest: Digest


@dataclass
class Batch:
    """One claimed batch: jobs to send, and outcomes decided already (then the sends')."""

    claims: list[Claim]
    jobs: list[Job] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    renders: int = 0  # digests rendered for it (the rest came from the pass's cache)


def log_ids(claim: Claim) -> dict[str, int]:
    """Log fields naming a delivery and its subscriber (ids, never the address)."""
    return {"delivery_id": claim.id, "subscriber_id": claim.subscriber_id}


def short(exc: BaseException) -> str:
    """An exception in one line of at most 500 characters (for `error`)."""
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
BodyCache = OrderedDict[tuple[str, str, date, tuple[tuple[int, str], ...]], Digest]
PROFILE_CACHE_SIZE = 4096  # distinct preference profiles kept by a pass (a few hundred bytes each)


@dataclass
class PassCache:
    """What one send pass keeps from batch to batch, each part bounded."""

    bodies: BodyCache = field(default_factory=OrderedDict)
    # The latest loaded selector and the window it covers (see prepare).
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


def prepare(
    ctx: AppContext, renderer: Renderer, claims: list[Claim], cache: PassCache | None = None
) -> Batch:
    """Load the batch's subscribers, select per profile and render once per distinct digest."""
    cache = cache or PassCache()
    bodies, loaded, profiles = cache.bodies, cache.loaded, cache.profiles
    batch = Batch(claims)
    done = batch.outcomes
    # Reads only, so a read transaction: on SQLite a plain BEGIN that takes no write lock.
    # Under `session_scope` (BEGIN IMMEDIATE) the lock was held through the batch's
    # selection, and the recorder's group commits waited for it: sending stalled on the
    # unrecorded bound (recorder.UNRECORDED_MAX) while the next batch was prepared.
    with read_scope(ctx.engine) as session:
        subs = subscribers.for_sending(session, (c.subscriber_id for c in claims))
        wanted: list[tuple[Claim, subscribers.SendRow, Profile]] = []
        again: list[tuple[Claim, subscribers.SendRow, list[Pick]]] = []
        if len(profiles) > PROFILE_CACHE_SIZE:
            profiles.clear()
        for c in claims:
            sub = subs.get(c.subscriber_id)
            if sub is None or not may_mail(sub, MailKind.DIGEST):
                # Unsubscribed or bounced after planning: never mail them.
                status = sub.status if sub is not None else "gone"
                done.append(Outcome(c, D.SKIPPED, f"subscriber is {status}"))
                continue
            if c.resend_of is not None:  # the papers of the digest it repeats, not a selection
                picks = resent_picks(session, c.resend_of)
                if picks:
                    again.append((c, sub, picks))
                else:
                    why = f"nothing to resend: delivery {c.resend_of} carried no papers"
                    done.append(Outcome(c, D.SKIPPED, why))
                continue
            pkey = (  # the lists are tuples (subscribers.SendRow)
                str(sub.topics),
                sub.categories,
                sub.max_items,
                c.window_start,
                c.window_end,
                sub.follows,
                sub.muted_authors,
            )
            profile = profiles.get(pkey)
            if profile is None:
                profile = profiles[pkey] = Profile.for_subscriber(sub, c.window_start, c.window_end)
            wanted.append((c, sub, profile))
        if not wanted:
            _resend_jobs(ctx, renderer, again, batch)
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
        # profile's memoized ranking, those with votes are ranked individually, their votes
        # faded to their digest's window end (compose.fade_instant): a retry, or a preview,
        # ranks them the same whenever it runs.
        tastes: dict[int, Taste] = load_tastes(
            session, [s.id for _, s, _ in wanted], cache.papers, end
        )
        fade = {s.id: fade_instant(c) for c, s, _ in wanted if s.id in tastes}
        tastes = {sid: replace(t, now=fade[sid]) for sid, t in tastes.items()}
        picks_of: list[list[Pick]] = [
            selector.select(p, history.get(s.id, frozenset()), tastes.get(s.id))
            for _, s, p in wanted
        ]
        voters = set(tastes)
    days: dict[tuple[datetime, str], date] = {}  # a batch has a window end or two, few zones
    for (c, sub, profile), picks in zip(wanted, picks_of, strict=True):
        if not picks:
            done.append(Outcome(c, D.SKIPPED, EMPTY_REASON))
            continue
        day = days.get((c.window_end, sub.timezone))
        if day is None:
            day = days[c.window_end, sub.timezone] = local_day(c.window_end, sub.timezone)
        key = (profile.key, sub.format, day, tuple((p.entry.id or 0, p.reason) for p in picks))
        digest = bodies.get(key)
        if digest is not None:
            bodies.move_to_end(key)
        else:
            try:
                digest = build_digest(ctx, renderer, profile, picks, day, sub.format)
            except TemplateProblem as exc:  # an admin's template: one line, retried later
                log.error("render failed for delivery %s: %s", c.id, exc, extra=log_ids(c))
                done.append(temporary_failure(c, f"render failed: {short(exc)}", ours(RENDER)))
                continue
            except Exception as exc:  # a template error must not lose the batch
                log.exception("render failed for delivery %s", c.id, extra=log_ids(c))
                done.append(temporary_failure(c, f"render failed: {short(exc)}", ours(RENDER)))
                continue
            # A digest ranked by one subscriber's votes is theirs alone: kept out of the
            # pass's cache so it does not push out the digests profiles share.
            if sub.id not in voters:
                bodies[key] = digest
                if len(bodies) > BODY_CACHE_SIZE:
                    bodies.popitem(last=False)
            batch.renders += 1
        batch.jobs.append(Job(c, sub, digest))
    _resend_jobs(ctx, renderer, again, batch)
    return batch


def resent_picks(session: Any, original_id: int) -> list[Pick]:
    """The papers a sent delivery carried, in its order, with the reasons it gave: what a
    resend of it carries (entries deleted since are left out)."""
    reasons = deliveries.carried_reasons(session, original_id)
    entries = entries_by_id(session, deliveries.entry_ids(session, original_id))
    return [Pick(e, 0.0, reasons.get(e.id or 0, "")) for e in entries]


def _resend_jobs(
    ctx: AppContext,
    renderer: Renderer,
    again: list[tuple[Claim, subscribers.SendRow, list[Pick]]],
    batch: Batch,
) -> None:
    """Render each resend (rare: one at a time, not cached) with its original's papers,
    window and local date; a template problem is retried like any render failure."""
    for c, sub, picks in again:
        profile = Profile.for_subscriber(sub, c.window_start, c.window_end)
        day = local_day(c.window_end, sub.timezone)
        try:
            digest = build_digest(ctx, renderer, profile, picks, day, sub.format)
        except Exception as exc:  # an admin's template: one line, retried later
            log.error("render failed for delivery %s: %s", c.id, exc, extra=log_ids(c))
            batch.outcomes.append(
                temporary_failure(c, f"render failed: {short(exc)}", ours(RENDER))
            )
            continue
        batch.renders += 1
        batch.jobs.append(Job(c, sub, digest))


def claim_and_prepare(
    ctx: AppContext, renderer: Renderer, cache: PassCache, worker_id: str, limit: int
) -> Batch | None:
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
    return prepare(ctx, renderer, claims, cache)
