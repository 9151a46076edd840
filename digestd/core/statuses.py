"""The statuses of subscribers and deliveries, and which moves between them are allowed.

Stored as their lowercase string values (a StrEnum compares equal to its value, so rows
read back as plain strings still match). The transition tables are the rules; the one
place that applies them is `digestd.subscribers.lifecycle` (one function per subscriber transition)
and `digestd.delivery.deliveries` (the delivery store).
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

# Allowed subscriber moves (from → to). Bounced leaves only to active, through `lift`.
SUBSCRIBER_TRANSITIONS: dict[SubscriberStatus, frozenset[SubscriberStatus]] = {
    S.PENDING: frozenset({S.ACTIVE, S.SUSPENDED, S.UNSUBSCRIBED, S.BOUNCED}),
    S.ACTIVE: frozenset({S.SUSPENDED, S.UNSUBSCRIBED, S.BOUNCED}),
    S.SUSPENDED: frozenset({S.ACTIVE, S.PENDING, S.UNSUBSCRIBED, S.BOUNCED}),
    S.UNSUBSCRIBED: frozenset({S.PENDING, S.BOUNCED}),
    S.BOUNCED: frozenset({S.ACTIVE}),
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
