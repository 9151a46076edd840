"""The statuses of subscribers and deliveries, and which moves between them are allowed.

Stored as their lowercase string values (a StrEnum compares equal to its value). The
transition tables are the rules; the one place that applies them is
`digestd.subscribers.lifecycle` (one function per subscriber transition, and `may_mail`)
and `digestd.delivery.deliveries` (the delivery store). No other module names a status by
its string.
"""

from __future__ import annotations

from enum import StrEnum


class SubscriberStatus(StrEnum):
    """Where a person stands: only `active` subscribers are mailed digests."""

    PENDING = "pending"  # signed up, not confirmed yet (double opt-in)
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"  # hard bounces: only an admin lifts it
    SUSPENDED = "suspended"  # paused by the person or an admin


class StoppedBy(StrEnum):
    """Why mail stopped (Mailman's delivery status reasons): a column beside the status,
    None while mail may go (pending, active)."""

    PERSON = "person"  # the person: one-click, the unsubscribe page, pausing on the page
    MAIL = "mail"  # mail to the List-Unsubscribe address
    COMPLAINT = "complaint"  # a spam complaint (feedback loop): suppressed
    ADMIN = "admin"  # an admin (CLI, an import's status column)
    BOUNCE = "bounce"  # the address bounces: suppressed


class ConsentVia(StrEnum):
    """How a person's consent to be mailed was given (the consent record's `given_by`)."""

    WEB = "web"  # the public form (time and client address kept)
    IMPORT = "import"  # a CSV import (the file's own opt-in and confirm times kept)
    ADMIN = "admin"  # `digestd subscribers add` by an admin
    MAIL = "mail"  # a `subscribe` mail command


class MailKind(StrEnum):
    """What we want to send to an address (`lifecycle.may_mail` answers per kind)."""

    DIGEST = "digest"
    CONFIRMATION = "confirmation"  # the double opt-in mail, or "you are already subscribed"
    REPLY = "reply"  # an answer to a mail command


class Move(StrEnum):
    """The subscriber transitions, one function each in `digestd.subscribers.lifecycle`."""

    SUBSCRIBE = "subscribe"  # the person signs up again
    CONFIRM = "confirm"
    SUSPEND = "suspend"
    RESUME = "resume"
    UNSUBSCRIBE = "unsubscribe"
    COMPLAIN = "complain"
    BOUNCE = "bounce"
    LIFT = "lift"  # an admin lifts a suppression (a bounce or a complaint)


class DeliveryStatus(StrEnum):
    """Where one digest (subscriber, period) stands in the delivery store."""

    PENDING = "pending"  # planned, claimable from next_attempt_at
    SENDING = "sending"  # claimed by a worker under a lease
    SENT = "sent"
    RETRY = "retry"  # a temporary failure: claimable again at next_attempt_at
    FAILED = "failed"  # permanent, or attempts used up
    SKIPPED = "skipped"  # nothing to send (empty digest, subscriber no longer active)


S = SubscriberStatus
D = DeliveryStatus

# The allowed subscriber moves, the one table of them: for each move, the statuses it may
# start from and where it may lead (resume and lift lead to pending when the address was
# never confirmed: neither may skip the double opt-in). Every transition function in
# `digestd.subscribers.lifecycle` is checked against this table by a unit test.
MOVES: dict[Move, dict[SubscriberStatus, frozenset[SubscriberStatus]]] = {
    Move.SUBSCRIBE: {S.UNSUBSCRIBED: frozenset({S.PENDING})},
    Move.CONFIRM: {S.PENDING: frozenset({S.ACTIVE})},
    Move.SUSPEND: {s: frozenset({S.SUSPENDED}) for s in (S.PENDING, S.ACTIVE)},
    Move.RESUME: {S.SUSPENDED: frozenset({S.ACTIVE, S.PENDING})},
    Move.UNSUBSCRIBE: {s: frozenset({S.UNSUBSCRIBED}) for s in (S.PENDING, S.ACTIVE, S.SUSPENDED)},
    # A complaint about an unsubscribed address still suppresses it (status unchanged).
    Move.COMPLAIN: {
        s: frozenset({S.UNSUBSCRIBED}) for s in (S.PENDING, S.ACTIVE, S.SUSPENDED, S.UNSUBSCRIBED)
    },
    # Unsubscribed addresses are not bounced: they get no mail, and a later `lift` of a
    # bounce would otherwise reopen an address its owner had left.
    Move.BOUNCE: {s: frozenset({S.BOUNCED}) for s in (S.PENDING, S.ACTIVE, S.SUSPENDED)},
    # A bounce is lifted to active (pending if never confirmed); a complaint stays
    # unsubscribed, only no longer suppressed: the person may subscribe again.
    Move.LIFT: {
        S.BOUNCED: frozenset({S.ACTIVE, S.PENDING}),
        S.UNSUBSCRIBED: frozenset({S.UNSUBSCRIBED}),
    },
}

# Where a move changes nothing and is not an error (asking twice is harmless: RFC 8058 wants
# a repeated unsubscribe to succeed; a bounce of an address that gets no mail counts nothing).
UNCHANGED: dict[Move, frozenset[SubscriberStatus]] = {
    Move.SUBSCRIBE: frozenset({S.PENDING}),
    Move.CONFIRM: frozenset({S.ACTIVE}),
    Move.SUSPEND: frozenset({S.SUSPENDED}),
    Move.RESUME: frozenset({S.ACTIVE}),
    Move.UNSUBSCRIBE: frozenset({S.UNSUBSCRIBED, S.BOUNCED}),
    Move.COMPLAIN: frozenset({S.BOUNCED}),
    Move.BOUNCE: frozenset({S.BOUNCED, S.UNSUBSCRIBED}),
    Move.LIFT: frozenset(),
}

# Suppression (a bounce, or a complaint until an admin lifts it) is a column, `suppressed`.
# These moves need it to be as given: a suppressed address cannot sign up again, and only a
# suppressed one can be lifted.
NEEDS_SUPPRESSED: dict[Move, bool] = {Move.SUBSCRIBE: False, Move.LIFT: True}
# Moves an admin may make (the CLI's commands, an import's status column): never a
# re-subscription (only the person does that) and never a lift (its own command).
ADMIN_MOVES = (Move.CONFIRM, Move.RESUME, Move.SUSPEND, Move.UNSUBSCRIBE, Move.BOUNCE)

# from -> to, every move together (for listings and the README's table).
SUBSCRIBER_TRANSITIONS: dict[SubscriberStatus, frozenset[SubscriberStatus]] = {
    old: frozenset(
        new for table in MOVES.values() for new in table.get(old, frozenset()) if new != old
    )
    for old in SubscriberStatus
}

# Allowed delivery moves. `sending` is left by recording an outcome or by a release
# (lease expired, or the worker handing back what it did not attempt).
DELIVERY_TRANSITIONS: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    D.PENDING: frozenset({D.SENDING}),
    D.RETRY: frozenset({D.SENDING}),
    D.SENDING: frozenset({D.SENT, D.RETRY, D.FAILED, D.SKIPPED, D.PENDING}),
    D.FAILED: frozenset({D.RETRY}),  # `deliveries retry --failed`
    D.SENT: frozenset(),
    D.SKIPPED: frozenset(),
}

CLAIMABLE = (D.PENDING, D.RETRY)
# Digests whose window counts as covered: the next digest starts where they ended
# (a failed digest's window is covered again by the next one).
WINDOW_DONE = (D.SENT, D.SKIPPED)
# Outcomes a worker records for a claimed delivery.
OUTCOMES = (D.SENT, D.RETRY, D.FAILED, D.SKIPPED, D.PENDING)


def subscriber_move_allowed(old: str, new: str) -> bool:
    """Whether a subscriber may go from `old` to `new` (same status: nothing to do)."""
    return SubscriberStatus(new) in SUBSCRIBER_TRANSITIONS[SubscriberStatus(old)]


def delivery_move_allowed(old: str, new: str) -> bool:
    """Whether a delivery may go from `old` to `new`."""
    return DeliveryStatus(new) in DELIVERY_TRANSITIONS[DeliveryStatus(old)]


def parse_subscriber_status(value: str) -> SubscriberStatus:
    """A status from user input (any case, spaces), or ValueError naming the choices."""
    try:
        return SubscriberStatus(value.strip().lower())
    except ValueError:
        choices = ", ".join(SubscriberStatus)
        raise ValueError(f"status must be one of {choices}, got {value!r}") from None


def parse_delivery_status(value: str) -> DeliveryStatus:
    """A delivery status from user input, or ValueError naming the choices."""
    try:
        return DeliveryStatus(value.strip().lower())
    except ValueError:
        choices = ", ".join(DeliveryStatus)
        raise ValueError(f"status must be one of {choices}, got {value!r}") from None
