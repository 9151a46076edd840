"""The subscriber lifecycle: every status change, why mail stopped, consent, and whether an
address may be mailed. The one place these rules live.

Each transition is one function here (subscribe, confirm, suspend, resume, unsubscribe,
complain, bounce, lift), checked against the table in `digestd.core.statuses` (MOVES,
UNCHANGED, NEEDS_SUPPRESSED): an illegal move raises `TransitionError` with one line saying
why. They change a Subscriber object and return the audit `Change` to record, or None when
there was nothing to do; they touch no database (a unit test checks every function against
the table without one). The use cases (`digestd.subscribers.signup`, `.manage`,
`.importing`, `.bounce_policy`) load the row through the store, call these, and save.

`may_mail(sub, kind)` answers "may this address get mail, and of which kind": sending,
opt-in, mail commands and the web all ask it.

The consent record (when and how the person agreed: web form with time and IP, an import
with the file's own times, an admin, a mail command; when and how it ended) is written by
`new_subscriber_values`, `subscribe` and `unsubscribe`/`complain` here, and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from digestd.core.models import Subscriber, new_link_key
from digestd.core.statuses import (
    ADMIN_MOVES,
    MOVES,
    NEEDS_SUPPRESSED,
    UNCHANGED,
    ConsentVia,
    MailKind,
    Move,
    StoppedBy,
    SubscriberStatus,
)
from digestd.subscribers.preferences import InvalidInput, Preferences

S = SubscriberStatus

# Audit actions (the `event` table); other parts add their own (e.g. confirmation_sent).
ADDED = "subscriber.added"
UPDATED = "subscriber.updated"
STATUS = "subscriber.status"
FORGOTTEN = "subscriber.forgotten"
LINKS_REVOKED = "subscriber.links_revoked"
LIFTED = "subscriber.suppression_lifted"

# How a person left (the `way` in an unsubscribe's event; stats count by it), and what it
# means for why mail stopped.
UNSUBSCRIBE_WAYS: dict[str, StoppedBy] = {
    "one-click": StoppedBy.PERSON,
    "page": StoppedBy.PERSON,
    "mail": StoppedBy.MAIL,
    "admin": StoppedBy.ADMIN,
    "complaint": StoppedBy.COMPLAINT,
}
# The statuses whose subscribers get digests (the SQL form of may_mail(…, DIGEST)).
DIGEST_STATUSES = (S.ACTIVE,)


class TransitionError(InvalidInput):
    """A status change the rules do not allow; the message is one line saying why."""


class MailState(Protocol):
    """What `may_mail` reads: a Subscriber, or a row of the store's sending columns."""

    @property
    def status(self) -> str: ...
    @property
    def suppressed(self) -> bool: ...


@dataclass(frozen=True)
class Change:
    """One audit line to record for a subscriber: its action and detail."""

    action: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class Consent:
    """When and how a person agreed to be mailed (the consent record's `given_*`)."""

    given_at: datetime
    given_by: ConsentVia
    source: str = ""
    ip: str | None = None


def may_mail(sub: MailState, kind: MailKind) -> bool:
    """Whether this address may get mail of this kind now.

    Nothing at all goes to a suppressed address (a bounce, or a complaint until an admin
    lifts it), not even a confirmation: the form answers as for anyone else. Digests go only
    to active subscribers. A confirmation or a reply to a command may go to anyone else: a
    pending address is confirming, an unsubscribed one signing up again."""
    if sub.suppressed or sub.status == S.BOUNCED:
        return False
    if kind == MailKind.DIGEST:
        return sub.status in DIGEST_STATUSES
    return True


def refusal(sub: Subscriber, action: str) -> TransitionError:
    """The one line that says why `action` is not possible from the subscriber's state."""
    status = sub.status
    if status == S.BOUNCED:
        why = "only an admin can lift it (digestd subscribers lift)"
    elif status == S.UNSUBSCRIBED and sub.suppressed:
        why = (
            f"suppressed after a spam complaint, cannot {action} it; only an admin can "
            "lift it (digestd subscribers lift)"
        )
    elif status == S.UNSUBSCRIBED:
        why = f"cannot {action} it; it has to subscribe again (and confirm)"
    elif status == S.PENDING:
        why = f"cannot {action} it before the address is confirmed"
    else:
        why = f"cannot {action} it"
    return TransitionError(f"{sub.email} is {status}: {why}")


def _go(sub: Subscriber, move: Move) -> bool:
    """Whether `move` changes something (False: nothing to do), or TransitionError."""
    old = S(sub.status)
    if old in UNCHANGED[move]:
        return False
    need = NEEDS_SUPPRESSED.get(move)
    if old not in MOVES[move] or (need is not None and bool(sub.suppressed) != need):
        raise refusal(sub, move.value)
    return True


def allowed(sub: Subscriber, move: Move) -> bool:
    """Whether `move` may be asked from the subscriber's state (a page offers it or not)."""
    try:
        _go(sub, move)
    except TransitionError:
        return False
    return True


def _status(sub: Subscriber, move: Move, to: SubscriberStatus, reason: str, **extra: Any) -> Change:
    """Set the new status (one of the table's targets for this move) and say so."""
    old = S(sub.status)
    assert to in MOVES[move][old], (move, old, to)
    sub.status = to
    # The caller's extra detail (a bounce's reply, the way out) never overrides the move's own.
    return Change(STATUS, {**extra, "from": old.value, "to": to.value, "reason": reason})


def _stop(sub: Subscriber, by: StoppedBy, now: datetime) -> None:
    sub.stopped_by = by
    sub.stopped_at = now


def _going_again(sub: Subscriber) -> None:
    sub.stopped_by = None
    sub.stopped_at = None


def new_link(sub: Subscriber) -> None:
    """A new link key: every link handed out so far stops working (and the version that
    links from before link keys carry moves on too)."""
    sub.link_key = new_link_key()
    sub.token_version = (sub.token_version or 1) + 1


def _consent_values(consent: Consent) -> dict[str, Any]:
    return {
        "consent_given_at": consent.given_at,
        "consent_given_by": consent.given_by,
        "consent_source": consent.source[:300],
        "consent_ip": (consent.ip or None) and consent.ip[:64],
    }


def _give_consent(sub: Subscriber, consent: Consent) -> None:
    for name, value in _consent_values(consent).items():
        setattr(sub, name, value)


def new_subscriber_values(
    email: str,
    prefs: Preferences,
    *,
    status: SubscriberStatus,
    now: datetime,
    consent: Consent,
    confirmed_at: datetime | None = None,
    stopped_by: StoppedBy | None = None,
    stopped_at: datetime | None = None,
    suppressed: bool = False,
) -> tuple[dict[str, Any], Change]:
    """A new subscriber's column values in `status`, with its consent record, and its
    `added` event: the rules for a new address, once, for one sign-up and a bulk import.

    Always the same keys (an executemany needs that); the columns left out (id, bounce
    count, token version) take the table's defaults. `confirmed_at` defaults to now for an
    active one (an admin or a file vouches for it); an unsubscribed one ended its consent at
    `stopped_at`; a bounced one is suppressed, and `suppressed` (a file's blocklist) makes
    any one so."""
    values: dict[str, Any] = {
        "email": email,
        "status": status,
        "created_at": now,
        **prefs.as_dict(),
        "link_key": new_link_key(),
        "confirmed_at": None,
        "unsubscribed_at": None,
        "stopped_by": None,
        "stopped_at": None,
        "suppressed": suppressed,
        **_consent_values(consent),
    }
    if status != S.PENDING:
        values["confirmed_at"] = confirmed_at or (now if status == S.ACTIVE else None)
    if status == S.SUSPENDED:
        values["stopped_by"] = stopped_by or StoppedBy.ADMIN
        values["stopped_at"] = stopped_at or now
    elif status == S.UNSUBSCRIBED:
        values["stopped_by"] = by = stopped_by or StoppedBy.PERSON
        values["stopped_at"] = values["unsubscribed_at"] = stopped_at or now
        values["suppressed"] = suppressed or by == StoppedBy.COMPLAINT
    elif status == S.BOUNCED:
        values["stopped_by"] = StoppedBy.BOUNCE
        values["stopped_at"] = stopped_at or now
        values["suppressed"] = True
    detail = {"status": status.value, **prefs.as_dict(), "consent": consent.given_by.value}
    return values, Change(ADDED, detail)


def new_subscriber(
    email: str,
    prefs: Preferences,
    *,
    status: SubscriberStatus,
    now: datetime,
    consent: Consent,
    confirmed_at: datetime | None = None,
    stopped_by: StoppedBy | None = None,
    stopped_at: datetime | None = None,
) -> tuple[Subscriber, Change]:
    """A new subscriber row (not yet stored): `new_subscriber_values` as a model object, for
    the use cases that add one address (a bulk import inserts the values themselves)."""
    values, change = new_subscriber_values(
        email,
        prefs,
        status=status,
        now=now,
        consent=consent,
        confirmed_at=confirmed_at,
        stopped_by=stopped_by,
        stopped_at=stopped_at,
    )
    return Subscriber(**values), change


# ---- the transitions: one function each --------------------------------------------------


def subscribe(sub: Subscriber, *, consent: Consent, reason: str = "") -> Change | None:
    """Re-open an unsubscribed address: pending until the person confirms again, with the
    new consent (the old confirmation no longer counts)."""
    if not _go(sub, Move.SUBSCRIBE):
        return None
    change = _status(sub, Move.SUBSCRIBE, S.PENDING, reason, consent=consent.given_by.value)
    _going_again(sub)
    _give_consent(sub, consent)
    sub.confirmed_at = None
    sub.unsubscribed_at = None
    return change


def confirm(sub: Subscriber, *, now: datetime, reason: str = "") -> Change | None:
    """Pending → active: the person proved the mailbox is theirs (or an admin says so)."""
    if not _go(sub, Move.CONFIRM):
        return None
    change = _status(sub, Move.CONFIRM, S.ACTIVE, reason)
    sub.confirmed_at = now
    _going_again(sub)
    return change


def suspend(
    sub: Subscriber, *, now: datetime, by: StoppedBy = StoppedBy.ADMIN, reason: str = ""
) -> Change | None:
    """Pause digests (active or pending → suspended); `resume` undoes it."""
    if not _go(sub, Move.SUSPEND):
        return None
    change = _status(sub, Move.SUSPEND, S.SUSPENDED, reason, stopped_by=by.value)
    _stop(sub, by, now)
    return change


def resume(sub: Subscriber, *, now: datetime, reason: str = "") -> Change | None:
    """Undo a suspend: active again, or pending if the address was never confirmed
    (resuming must not skip the double opt-in)."""
    if not _go(sub, Move.RESUME):
        return None
    to = S.ACTIVE if sub.confirmed_at is not None else S.PENDING
    change = _status(sub, Move.RESUME, to, reason)
    _going_again(sub)
    return change


def unsubscribe(sub: Subscriber, *, now: datetime, way: str, reason: str = "") -> Change | None:
    """Stop all mail (`way`: one-click, page, mail, admin; stored in the event and as
    `stopped_by`). The consent ends; every older link is withdrawn (a forwarded digest
    cannot act once the person subscribes again). A bounced address stays bounced."""
    if way not in UNSUBSCRIBE_WAYS or way == "complaint":
        raise InvalidInput(f"unsubscribe way must be one of {', '.join(UNSUBSCRIBE_WAYS)}")
    if not _go(sub, Move.UNSUBSCRIBE):
        return None
    by = UNSUBSCRIBE_WAYS[way]
    change = _status(sub, Move.UNSUBSCRIBE, S.UNSUBSCRIBED, reason, way=way, stopped_by=by.value)
    _stop(sub, by, now)
    sub.unsubscribed_at = now
    new_link(sub)
    return change


def complain(
    sub: Subscriber, *, now: datetime, reason: str = "", detail: dict[str, Any] | None = None
) -> Change | None:
    """A spam complaint: unsubscribed at once and suppressed (no mail of any kind, not even
    a confirmation, until an admin lifts it), whatever way the person had left before."""
    if not _go(sub, Move.COMPLAIN):
        return None
    if sub.status == S.UNSUBSCRIBED and sub.suppressed:
        return None  # complained already
    was_unsubscribed = sub.status == S.UNSUBSCRIBED
    change = _status(
        sub,
        Move.COMPLAIN,
        S.UNSUBSCRIBED,
        reason,
        **(detail or {}),
        way="complaint",
        stopped_by=StoppedBy.COMPLAINT.value,
    )
    _stop(sub, StoppedBy.COMPLAINT, now)
    sub.suppressed = True
    if not was_unsubscribed:
        sub.unsubscribed_at = now
        new_link(sub)
    return change


def bounce(
    sub: Subscriber, *, now: datetime, reason: str, detail: dict[str, Any] | None = None
) -> Change | None:
    """The address does not work: bounced and suppressed until an admin lifts it. An
    unsubscribed address gets no mail and is left as it is."""
    if not _go(sub, Move.BOUNCE):
        return None
    change = _status(
        sub, Move.BOUNCE, S.BOUNCED, reason, **(detail or {}), stopped_by=StoppedBy.BOUNCE.value
    )
    _stop(sub, StoppedBy.BOUNCE, now)
    sub.suppressed = True
    return change


def lift(sub: Subscriber, *, now: datetime, reason: str = "") -> Change | None:
    """An admin's decision that mail may go to a suppressed address again: a bounced one is
    active again (pending if never confirmed) with its bounce count reset; a complained one
    stays unsubscribed but may subscribe again."""
    if not _go(sub, Move.LIFT):
        return None
    sub.suppressed = False
    sub.bounce_count = 0
    sub.bounce_last_at = None
    if sub.status == S.UNSUBSCRIBED:
        return Change(LIFTED, {"was": StoppedBy.COMPLAINT.value, "reason": reason})
    to = S.ACTIVE if sub.confirmed_at is not None else S.PENDING
    change = _status(sub, Move.LIFT, to, reason)
    _going_again(sub)
    return change


def revoke_links(sub: Subscriber) -> Change:
    """Withdraw every signed link handed out so far ("sign me out of all links")."""
    new_link(sub)
    return Change(LINKS_REVOKED, {"version": sub.token_version})


# What the functions above do, by move: the unit test walks this against statuses.MOVES.
TRANSITIONS: dict[Move, Any] = {
    Move.SUBSCRIBE: subscribe,
    Move.CONFIRM: confirm,
    Move.SUSPEND: suspend,
    Move.RESUME: resume,
    Move.UNSUBSCRIBE: unsubscribe,
    Move.COMPLAIN: complain,
    Move.BOUNCE: bounce,
    Move.LIFT: lift,
}


def admin_refusal(sub: Subscriber, wanted: SubscriberStatus) -> TransitionError | None:
    """Why an admin (a CLI command, an import's status column) cannot set `wanted` on this
    subscriber, or None. Only the admin moves of the table lead anywhere."""
    if sub.status == wanted or _admin_path(sub, wanted):
        return None
    return refusal(sub, f"set {wanted} on")


def _admin_path(sub: Subscriber, wanted: SubscriberStatus) -> list[Move]:
    """The admin moves that lead from the subscriber's status to `wanted` (resume then
    confirm for a never-confirmed suspended address), or [] when none does."""
    old = S(sub.status)
    for move in ADMIN_MOVES:
        targets = MOVES[move].get(old, frozenset())
        if move == Move.RESUME and old in MOVES[move]:
            targets = frozenset({S.ACTIVE if sub.confirmed_at is not None else S.PENDING})
        if wanted in targets:
            return [move]
    if old == S.SUSPENDED and wanted == S.ACTIVE:
        return [Move.RESUME, Move.CONFIRM]
    return []


def set_by_admin(
    sub: Subscriber, wanted: SubscriberStatus, *, now: datetime, reason: str = "admin"
) -> list[Change]:
    """Move to `wanted` by the admin moves that lead there (TransitionError if none does);
    [] when already there."""
    refused = admin_refusal(sub, wanted)
    if refused is not None:
        raise refused
    changes: list[Change] = []
    for move in _admin_path(sub, wanted) if sub.status != wanted else []:
        change: Change | None
        if move == Move.UNSUBSCRIBE:
            change = unsubscribe(sub, now=now, way="admin", reason=reason)
        elif move == Move.SUSPEND:
            change = suspend(sub, now=now, by=StoppedBy.ADMIN, reason=reason)
        elif move == Move.BOUNCE:
            change = bounce(sub, now=now, reason=reason)
        elif move == Move.CONFIRM:
            change = confirm(sub, now=now, reason=reason)
        else:
            change = resume(sub, now=now, reason=reason)
        if change is not None:
            changes.append(change)
    return changes
