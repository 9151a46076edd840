"""Every subscriber transition from every status: allowed moves change the status and write
one audit event, illegal ones are refused with one clear line and change nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Event, Subscriber
from digestd.core.statuses import SUBSCRIBER_TRANSITIONS, SubscriberStatus
from digestd.subscribers import lifecycle as subs

S = SubscriberStatus
NOW = datetime(2026, 11, 26, 8, tzinfo=UTC)

Move = Callable[[Session, Subscriber], bool]
MOVES: dict[str, Move] = {
    "subscribe": lambda s, sub: subs.subscribe(s, sub, actor="t", now=NOW),
    "confirm": lambda s, sub: subs.confirm(s, sub, actor="t", now=NOW),
    "suspend": lambda s, sub: subs.suspend(s, sub, actor="t", now=NOW),
    "resume": lambda s, sub: subs.resume(s, sub, actor="t", now=NOW),
    "unsubscribe": lambda s, sub: subs.unsubscribe(s, sub, actor="t", now=NOW, way="page"),
    "bounce": lambda s, sub: subs.bounce(s, sub, actor="t", now=NOW, reason="5.1.1"),
    "complain": lambda s, sub: subs.complain(s, sub, actor="t", now=NOW, reason="ARF"),
    "lift": lambda s, sub: subs.lift(s, sub, actor="t", now=NOW),
}

# (from, move) → the status after it, None when refused. Same status after: returns False.
EXPECTED: dict[tuple[S, str], S | None] = {
    (S.PENDING, "subscribe"): S.PENDING,
    (S.PENDING, "confirm"): S.ACTIVE,
    (S.PENDING, "suspend"): S.SUSPENDED,
    (S.PENDING, "resume"): S.PENDING,  # nothing to resume: never suspended, not confirmed
    (S.PENDING, "unsubscribe"): S.UNSUBSCRIBED,
    (S.PENDING, "bounce"): S.BOUNCED,
    (S.PENDING, "complain"): S.UNSUBSCRIBED,
    (S.PENDING, "lift"): None,
    (S.ACTIVE, "subscribe"): None,
    (S.ACTIVE, "confirm"): S.ACTIVE,
    (S.ACTIVE, "suspend"): S.SUSPENDED,
    (S.ACTIVE, "resume"): S.ACTIVE,
    (S.ACTIVE, "unsubscribe"): S.UNSUBSCRIBED,
    (S.ACTIVE, "bounce"): S.BOUNCED,
    (S.ACTIVE, "complain"): S.UNSUBSCRIBED,
    (S.ACTIVE, "lift"): S.ACTIVE,
    (S.SUSPENDED, "subscribe"): None,
    (S.SUSPENDED, "confirm"): None,
    (S.SUSPENDED, "suspend"): S.SUSPENDED,
    (S.SUSPENDED, "resume"): S.ACTIVE,  # confirmed before; unconfirmed ones go to pending
    (S.SUSPENDED, "unsubscribe"): S.UNSUBSCRIBED,
    (S.SUSPENDED, "bounce"): S.BOUNCED,
    (S.SUSPENDED, "complain"): S.UNSUBSCRIBED,
    (S.SUSPENDED, "lift"): None,
    (S.UNSUBSCRIBED, "subscribe"): S.PENDING,
    (S.UNSUBSCRIBED, "confirm"): None,
    (S.UNSUBSCRIBED, "suspend"): None,
    (S.UNSUBSCRIBED, "resume"): None,
    (S.UNSUBSCRIBED, "unsubscribe"): S.UNSUBSCRIBED,
    (S.UNSUBSCRIBED, "bounce"): S.BOUNCED,
    (S.UNSUBSCRIBED, "complain"): S.UNSUBSCRIBED,
    (S.UNSUBSCRIBED, "lift"): None,
    (S.BOUNCED, "subscribe"): None,
    (S.BOUNCED, "confirm"): None,
    (S.BOUNCED, "suspend"): None,
    (S.BOUNCED, "resume"): None,
    (S.BOUNCED, "unsubscribe"): S.BOUNCED,  # no mail goes there already; stays bounced
    (S.BOUNCED, "bounce"): S.BOUNCED,
    (S.BOUNCED, "complain"): S.BOUNCED,
    (S.BOUNCED, "lift"): S.ACTIVE,
}


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[AppContext]:
    app = AppContext(Settings(database_url=f"sqlite:///{tmp_path / 't.db'}"), clock=lambda: NOW)
    app.migrate()
    yield app
    app.dispose()


def _new(session: Session, n: int, status: S) -> Subscriber:
    sub = Subscriber(
        email=f"p{n}@example.org",
        status=status.value,
        created_at=NOW,
        confirmed_at=NOW if status != S.PENDING else None,
        bounce_count=3 if status == S.BOUNCED else 0,
    )
    session.add(sub)
    session.flush()
    return sub


def _status_events(session: Session, sub: Subscriber) -> list[dict[str, Any]]:
    rows = session.exec(
        select(Event).where(Event.subscriber_id == sub.id, Event.action == subs.STATUS)
    )
    return [e.detail for e in rows]


def test_every_transition_from_every_status(ctx: AppContext) -> None:
    assert {k[0] for k in EXPECTED} == set(S) and {k[1] for k in EXPECTED} == set(MOVES)
    with session_scope(ctx.engine) as s:
        for n, ((start, name), after) in enumerate(EXPECTED.items()):
            sub = _new(s, n, start)
            case = f"{name} from {start}"
            if after is None:
                with pytest.raises(subs.TransitionError) as err:
                    MOVES[name](s, sub)
                message = str(err.value)
                assert "\n" not in message and message.startswith(f"p{n}@example.org is {start}")
                if start == S.BOUNCED:
                    assert "only an admin can lift it (digestd subscribers lift)" in message
                assert sub.status == start and _status_events(s, sub) == [], case
                continue
            changed = MOVES[name](s, sub)
            assert sub.status == after, case
            assert changed == (after != start), case
            events = _status_events(s, sub)
            if not changed:
                assert events == [], case
                continue
            assert S(after) in SUBSCRIBER_TRANSITIONS[start], case
            [detail] = events
            assert (detail["from"], detail["to"]) == (start.value, after.value), case
            if name in ("unsubscribe", "complain"):
                assert detail["way"] == ("page" if name == "unsubscribe" else "complaint")
            if name == "lift":
                assert sub.bounce_count == 0


def test_resume_never_skips_the_double_opt_in(ctx: AppContext) -> None:
    with session_scope(ctx.engine) as s:
        sub = _new(s, 1, S.PENDING)
        assert subs.suspend(s, sub, actor="t", now=NOW)
        assert subs.resume(s, sub, actor="t", now=NOW)
        assert sub.status == S.PENDING


def test_a_forgotten_subscriber_cannot_be_confirmed(ctx: AppContext) -> None:
    with session_scope(ctx.engine) as s:
        sub = _new(s, 1, S.PENDING)
        subs.forget(s, sub, actor="t", now=NOW)
        for name, move in MOVES.items():
            with pytest.raises(subs.TransitionError, match="was forgotten") as err:
                move(s, sub)
            assert "\n" not in str(err.value), name
    # after the commit, too
    with session_scope(ctx.engine) as s, pytest.raises(subs.TransitionError, match="forgotten"):
        subs.confirm(s, sub, actor="t", now=NOW)


def test_extra_detail_never_overrides_the_move_itself(ctx: AppContext) -> None:
    with session_scope(ctx.engine) as s:
        sub = _new(s, 1, S.ACTIVE)
        odd = {"way": "page", "from": "x", "to": "y", "feedback_type": "abuse"}
        assert subs.complain(s, sub, actor="inbound", now=NOW, reason="ARF", detail=odd)
        [detail] = _status_events(s, sub)
        assert detail == {
            "from": "active",
            "to": "unsubscribed",
            "reason": "ARF",
            "way": "complaint",
            "feedback_type": "abuse",
        }
