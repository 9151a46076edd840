"""Reading subscribers for an admin: one with their audit trail, votes and consent record
(`subscribers show`), and pages of the list (`subscribers list`). Each call is one read
transaction of its own."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from digestd.core.context import AppContext
from digestd.core.db import read_scope
from digestd.subscribers import store, vote_store
from digestd.subscribers.manage import NotFound
from digestd.subscribers.preferences import normalize_email
from digestd.subscribers.queries import subscriber_dict

RECENT_EVENTS = 20


def show(ctx: AppContext, email: str) -> dict[str, Any]:
    """One subscriber for `subscribers show --json`: every field of the public view at the
    top level (`email`, `status`, `stopped_by`, `consent`, `may_mail`, …), the same under
    `subscriber`, the newest audit events and the votes and liked papers."""
    with read_scope(ctx.engine) as session:
        sub = store.by_email(session, normalize_email(email))
        if sub is None:
            raise NotFound(f"no subscriber {email.strip()!r}")
        assert sub.id is not None
        view = subscriber_dict(sub)
        events = [
            {
                "action": e.action,
                "actor": e.actor,
                "at": e.created_at.isoformat(),
                "detail": e.detail,
            }
            for e in store.events_of(session, sub.id, RECENT_EVENTS)
        ]
        voted = [
            {
                "paper": v.paper_id,
                "title": v.title,
                "vote": "like" if v.interest else vote_store.direction_name(v.value),
                "at": v.created_at.isoformat(),
            }
            for v in vote_store.listing(session, sub.id)
        ]
    return {**view, "subscriber": view, "events": events, "votes": voted}


@dataclass(frozen=True)
class Page:
    """One page of `subscribers list`: its rows, how many match, how many came before."""

    rows: list[dict[str, Any]]
    matching: int
    before: int


def page(
    ctx: AppContext, *, search: str | None, status: str | None, after: int, limit: int
) -> Page:
    """The page after subscriber id `after` (keyset paging), with the counts around it."""
    with read_scope(ctx.engine) as session:
        subs = store.list_page(session, search=search, status=status, after_id=after, limit=limit)
        matching = store.count_matching(session, search=search, status=status)
        remaining = (
            store.count_matching(session, search=search, status=status, after_id=after)
            if after
            else matching
        )
        return Page([subscriber_dict(s) for s in subs], matching, matching - remaining)


def every(
    ctx: AppContext, *, search: str | None, status: str | None, after: int, limit: int | None
) -> Iterator[dict[str, Any]]:
    """Every matching subscriber's public view, page by page (bounded memory; one read
    transaction a page), at most `limit` if given."""
    left = limit
    size = 1000
    while left is None or left > 0:
        want = size if left is None else min(left, size)
        with read_scope(ctx.engine) as session:
            subs = store.list_page(
                session, search=search, status=status, after_id=after, limit=want
            )
            rows = [subscriber_dict(s) for s in subs]
        if not rows:
            return
        yield from rows
        after = rows[-1]["id"] or after
        if left is not None:
            left -= len(rows)
        if len(rows) < want:
            return
