"""`GET /view/{token}/{period}`: "View in browser", the web version of one sent digest.

The signed token (purpose `view`, tokens.py) proves the subscriber; the period picks one of
their sent digests. The page shows the digest's papers (its delivery's `entry_ids`, in
order) with the reasons the mail gave (stored with the delivery when it was sent, so the
page says what the mail said whatever the topics are today), and nothing about the person:
no address, no unsubscribe or preference links (anyone the mail is forwarded to could use
those). A GET changes nothing; a forgotten subscriber's links stop working (the row is
gone), revoked ones too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from digestd.core.context import AppContext
from digestd.core.db import read_scope
from digestd.delivery import deliveries
from digestd.delivery.digests import local_day
from digestd.ingest.store import entries_by_id
from digestd.mail.render import digest_subject, pick_fields
from digestd.mail.subject import count_label, date_label
from digestd.ranking.select import Pick, Profile, reasons_for
from digestd.web import links
from digestd.web.responses import render, state

router = APIRouter()

_PERIOD = re.compile(r"^\d{4}-(\d{2}-\d{2}|W\d{2})$")
NOT_AVAILABLE = "This digest is not available. Please use the link from the email itself."
# A paper no longer in the digest's window or matching the topics still shows, with this.
FALLBACK_REASON = "picked for you"


@dataclass(frozen=True)
class DigestView:
    """What the page shows: the digest's date and its papers as the mail showed them."""

    title: str
    date_label: str
    count_label: str
    papers: list[dict[str, Any]]


def digest_view(ctx: AppContext, token: str, period: str) -> DigestView:
    """The sent digest of `period` of the subscriber the token belongs to (LinkError if none),
    with the reasons stored with it. A digest sent before reasons were stored (migration
    0011) gets them recomputed for its window and today's topics, as before."""
    with read_scope(ctx.engine) as session:
        sub = links.resolve(session, ctx.secret_key, "view", token, ctx.now())
        if not _PERIOD.match(period):
            raise links.LinkError(404, NOT_AVAILABLE)
        assert sub.id is not None
        delivery = deliveries.sent_for_period(session, sub.id, period)
        if delivery is None or delivery.window_start is None or delivery.window_end is None:
            raise links.LinkError(404, NOT_AVAILABLE)
        entries = entries_by_id(session, deliveries.entry_ids(session, delivery.id))
        reasons = deliveries.carried_reasons(session, delivery.id)
        if not reasons:
            profile = Profile.for_subscriber(sub, delivery.window_start, delivery.window_end)
            reasons = reasons_for(session, profile, entries)
        # The date the mail itself shows: the subscriber's local date at the window's end.
        when = local_day(delivery.window_end, sub.timezone)
        papers = [
            pick_fields(Pick(e, 0.0, reasons.get(e.id or 0, FALLBACK_REASON))) for e in entries
        ]
        return DigestView(
            title=digest_subject(when, entries),
            date_label=date_label(when),
            count_label=count_label(len(papers)),
            papers=papers,
        )


@router.get(
    "/view/{token}/{period}", summary="A sent digest in the browser", response_class=Response
)
async def view(request: Request, token: str, period: str) -> Response:
    """The web version of one digest; personal, so never cached (no-store)."""
    page = await run_in_threadpool(digest_view, state(request).ctx, token, period)
    return render(
        request,
        "digest.html",
        title=page.title,
        date_label=page.date_label,
        count_label=page.count_label,
        papers=page.papers,
    )
