"""Every subscriber transition function, from every state, against the one table of allowed
moves (`statuses.MOVES`, `UNCHANGED`, `NEEDS_SUPPRESSED`): no database, no other copy of
the rules. Allowed moves change the status to one the table names and return one audit
change; illegal ones are refused with one clear line and change nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from digestd.core.models import Subscriber
from digestd.core.statuses import (
    ADMIN_MOVES,
    MOVES,
    NEEDS_SUPPRESSED,
    SUBSCRIBER_TRANSITIONS,
    UNCHANGED,
    ConsentVia,
    MailKind,
    Move,
    StoppedBy,
    SubscriberStatus,
)
from digestd.subscribers import lifecycle
from digestd.subscribers.lifecycle import Change, Consent, TransitionError

S = SubscriberStatus
NOW = datetime(2026, 11, 26, 8, tzinfo=UTC)
CONSENT = Consent(given_at=NOW, given_by=ConsentVia.WEB, source="web form", ip="192.0.2.1")

CALLS: dict[Move, Callable[[Subscriber], Change | None]] = {
    Move.SUBSCRIBE: lambda sub: lifecycle.subscribe(sub, consent=CONSENT),
    Move.CONFIRM: lambda sub: lifecycle.confirm(sub, now=NOW),
    Move.SUSPEND: lambda sub: lifecycle.suspend(sub, now=NOW),
    Move.RESUME: lambda sub: lifecycle.resume(sub, now=NOW),
    Move.UNSUBSCRIBE: lambda sub: lifecycle.unsubscribe(sub, now=NOW, way="page"),
    Move.COMPLAIN: lambda sub: lifecycle.complain(sub, now=NOW, reason="ARF"),
    Move.BOUNCE: lambda sub: lifecycle.bounce(sub, now=NOW, reason="5.1.1"),
    Move.LIFT: lambda sub: lifecycle.lift(sub, now=NOW),
}


@dataclass(frozen=True)
class State:
    status: SubscriberStatus
    suppressed: bool
    confirmed: bool

    def subscriber(self) -> Subscriber:
        sub = Subscriber(
            id=1,
            email="ada@example.org",
            status=self.status,
            created_at=NOW - timedelta(days=9),
            confirmed_at=NOW - timedelta(days=8) if self.confirmed else None,
            suppressed=self.suppressed,
            link_key="k" * 12,
        )
        if self.status in (S.UNSUBSCRIBED, S.BOUNCED, S.SUSPENDED):
            sub.stopped_by = StoppedBy.COMPLAINT if self.suppressed else StoppedBy.PERSON
            if self.status == S.BOUNCED:
                sub.stopped_by = StoppedBy.BOUNCE
        return sub


# Every state a subscriber can be in: a bounced address is always suppressed; otherwise only
# an unsubscribed one (after a complaint) can be.
STATES = [
    State(status, suppressed, confirmed)
    for status in S
    for suppressed in (False, True)
    for confirmed in (False, True)
    if (status == S.BOUNCED) == suppressed or (status == S.UNSUBSCRIBED and suppressed)
]


def expected(move: Move, state: State) -> str | frozenset[SubscriberStatus]:
    """What the table says: "refused", "unchanged", or the statuses it may lead to."""
    if state.status in UNCHANGED[move]:
        return "unchanged"
    need = NEEDS_SUPPRESSED.get(move)
    if state.status not in MOVES[move] or (need is not None and state.suppressed != need):
        return "refused"
    return MOVES[move][state.status]


@pytest.mark.parametrize("move", list(Move))
@pytest.mark.parametrize("state", STATES, ids=str)
def test_every_transition_function_follows_the_table(move: Move, state: State) -> None:
    sub = state.subscriber()
    key, version = sub.link_key, sub.token_version
    want = expected(move, state)
    if want == "refused":
        with pytest.raises(TransitionError) as refused:
            CALLS[move](sub)
        message = str(refused.value)
        assert message.startswith(f"ada@example.org is {state.status}: ") and "\n" not in message
        assert (sub.status, bool(sub.suppressed)) == (state.status, state.suppressed)
        return
    change = CALLS[move](sub)
    if want == "unchanged" or (move == Move.COMPLAIN and state.suppressed):
        assert change is None and sub.status == state.status
        return
    assert isinstance(want, frozenset) and sub.status in want, (move, state, sub.status)
    assert change is not None and change.action in (lifecycle.STATUS, lifecycle.LIFTED)
    if sub.status != state.status:
        assert S(sub.status) in SUBSCRIBER_TRANSITIONS[state.status]
        assert (change.detail["from"], change.detail["to"]) == (state.status, sub.status)
    # What the move means beyond the status: why mail stopped, suppression, consent, links.
    if move in (Move.UNSUBSCRIBE, Move.COMPLAIN, Move.BOUNCE, Move.SUSPEND):
        assert sub.stopped_by is not None and sub.stopped_at == NOW
    if move in (Move.CONFIRM, Move.RESUME, Move.SUBSCRIBE) or sub.status == S.ACTIVE:
        assert sub.stopped_by is None
    if move in (Move.COMPLAIN, Move.BOUNCE):
        assert sub.suppressed
    if move == Move.LIFT:
        assert not sub.suppressed
    if move == Move.SUBSCRIBE:
        assert sub.consent_given_by == ConsentVia.WEB and sub.consent_ip == "192.0.2.1"
        assert sub.confirmed_at is None  # the old confirmation no longer counts
    if move in (Move.RESUME, Move.LIFT) and sub.status == S.ACTIVE:
        assert state.confirmed  # neither may skip the double opt-in
    if move == Move.UNSUBSCRIBE or (move == Move.COMPLAIN and state.status != S.UNSUBSCRIBED):
        assert (sub.link_key, sub.token_version) != (key, version)  # older links withdrawn


@pytest.mark.parametrize("state", STATES, ids=str)
def test_may_mail_answers_for_every_state_and_kind(state: State) -> None:
    sub = state.subscriber()
    assert lifecycle.may_mail(sub, MailKind.DIGEST) == (state.status == S.ACTIVE)
    for kind in (MailKind.CONFIRMATION, MailKind.REPLY):
        assert lifecycle.may_mail(sub, kind) == (not state.suppressed)
    assert (state.status in lifecycle.DIGEST_STATUSES) == lifecycle.may_mail(sub, MailKind.DIGEST)


@pytest.mark.parametrize("wanted", list(S))
@pytest.mark.parametrize("state", STATES, ids=str)
def test_an_admin_sets_a_status_only_through_admin_moves(
    wanted: SubscriberStatus, state: State
) -> None:
    sub = state.subscriber()
    refused = lifecycle.admin_refusal(sub, wanted)
    if refused is not None:
        with pytest.raises(TransitionError):
            lifecycle.set_by_admin(sub, wanted, now=NOW)
        assert sub.status == state.status
        return
    # Never a re-subscription or a lift: those are the person's and `lift`'s.
    assert not (state.status == S.UNSUBSCRIBED and wanted in (S.PENDING, S.ACTIVE))
    changes = lifecycle.set_by_admin(sub, wanted, now=NOW)
    assert sub.status == wanted
    assert (len(changes) == 0) == (state.status == wanted)
    assert all(c.action == lifecycle.STATUS for c in changes)
    assert state.status != S.BOUNCED or wanted == S.BOUNCED
    moves = {Move(m) for m in ADMIN_MOVES}
    assert Move.SUBSCRIBE not in moves and Move.LIFT not in moves


def test_unsubscribe_ways_say_why_mail_stopped() -> None:
    for way, by in (("one-click", "person"), ("page", "person"), ("mail", "mail")):
        sub = State(S.ACTIVE, False, True).subscriber()
        change = lifecycle.unsubscribe(sub, now=NOW, way=way)
        assert change is not None and change.detail["way"] == way and sub.stopped_by == by
        assert sub.unsubscribed_at == NOW
    sub = State(S.ACTIVE, False, True).subscriber()
    with pytest.raises(ValueError, match="unsubscribe way"):
        lifecycle.unsubscribe(sub, now=NOW, way="by magic")


def test_a_complaint_after_an_unsubscribe_still_suppresses() -> None:
    sub = State(S.UNSUBSCRIBED, False, True).subscriber()
    change = lifecycle.complain(sub, now=NOW)
    assert change is not None and sub.suppressed and sub.stopped_by == StoppedBy.COMPLAINT
    assert not lifecycle.may_mail(sub, MailKind.CONFIRMATION)
    assert lifecycle.complain(sub, now=NOW) is None  # twice: nothing more


def test_new_subscribers_carry_their_consent_record() -> None:
    from digestd.subscribers.preferences import Preferences

    sub, change = lifecycle.new_subscriber(
        "ada@example.org",
        Preferences(),
        status=S.UNSUBSCRIBED,
        now=NOW,
        consent=Consent(NOW - timedelta(days=400), ConsentVia.IMPORT, "import x.csv line 2"),
        confirmed_at=NOW - timedelta(days=399),
        stopped_at=NOW - timedelta(days=30),
    )
    assert change.action == lifecycle.ADDED and change.detail["consent"] == "import"
    assert sub.consent_given_at == NOW - timedelta(days=400)
    assert (sub.stopped_by, sub.unsubscribed_at) == ("person", NOW - timedelta(days=30))
    bounced, _ = lifecycle.new_subscriber(
        "b@example.org", Preferences(), status=S.BOUNCED, now=NOW, consent=CONSENT
    )
    assert bounced.suppressed and bounced.stopped_by == StoppedBy.BOUNCE
