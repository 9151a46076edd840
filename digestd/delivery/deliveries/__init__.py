"""The delivery store: every statement on `delivery` (with the papers each one carried) lives
in this package, one module a concern.

    pending ──claim──> sending ──record──> sent
       ^                  │ ├──> retry (next_attempt_at, backoff) ──claim──> … ──> failed
       └──── release ─────┘ ├──> failed (5xx, with the server's reply)
                            └──> skipped (empty digest / subscriber no longer active)

The interface is small and is this module's: `plan` (insert due deliveries: `planned`;
`plan_resend`: a delivery that sends an earlier one's digest again),
`claim` (take a batch under a lease), `renew` (extend it), `release` (hand it back:
`leases`), `record` (write outcomes: `outcomes`), `history` and `sent_entry_ids` (what the
window rules and never-twice read: `history`), the admin views (`list_deliveries`, `get`,
`waiting_for`, `carried_papers`, `carried_reasons`, `counts`, `retry_now`,
`forget_subscriber`: `views`) and the figures of `digestd stats` (`counts_per_day`,
`oldest_waiting`, `waiting`: `figures`). `bulk` runs the planning and recording statements
through the driver's executemany; `columns` reads and writes the columns that need it.
Callers own the transaction (`session_scope`); nothing
here commits.

Idempotency: the unique (subscriber, period) key plus INSERT … ON CONFLICT DO NOTHING means
planning twice, in two processes or after a restart, never creates a second delivery.
Exclusivity: a claim moves rows to `sending` with `lease_until`; on PostgreSQL the rows are
picked with `FOR UPDATE SKIP LOCKED` so replicas never claim the same row, on SQLite the
claim is one `BEGIN IMMEDIATE` transaction (single writer). A worker that dies leaves rows
in `sending`; `release` hands them back once the lease has run out, and the Message-ID
(fixed at planning) stays, so a resend is recognisably the same message.
"""

from digestd.delivery.deliveries.figures import DayCount, counts_per_day, oldest_waiting, waiting
from digestd.delivery.deliveries.history import (
    NO_HISTORY,
    SENT_AFTER_MARGIN,
    History,
    history,
    sent_entry_ids,
)
from digestd.delivery.deliveries.leases import Claim, claim, new_worker_id, release, renew
from digestd.delivery.deliveries.outcomes import (
    MAX_ATTEMPTS,
    RETRY_BASE,
    RETRY_CAP,
    Outcome,
    backoff,
    record,
    temporary_failure,
)
from digestd.delivery.deliveries.planned import (
    NewDelivery,
    message_id_domain,
    new_message_id,
    plan,
    plan_resend,
)
from digestd.delivery.deliveries.views import (
    CarriedPaper,
    DeliveryRow,
    carried_papers,
    carried_reasons,
    counts,
    entry_ids,
    find_by_message_id,
    forget_subscriber,
    get,
    latest_per_subscriber,
    latest_sent,
    list_deliveries,
    retry_now,
    sent_for_period,
    waiting_for,
)

__all__ = [
    "MAX_ATTEMPTS",
    "NO_HISTORY",
    "RETRY_BASE",
    "RETRY_CAP",
    "SENT_AFTER_MARGIN",
    "CarriedPaper",
    "Claim",
    "DayCount",
    "DeliveryRow",
    "History",
    "NewDelivery",
    "Outcome",
    "backoff",
    "carried_papers",
    "carried_reasons",
    "claim",
    "counts",
    "counts_per_day",
    "entry_ids",
    "find_by_message_id",
    "forget_subscriber",
    "get",
    "history",
    "latest_per_subscriber",
    "latest_sent",
    "list_deliveries",
    "message_id_domain",
    "new_message_id",
    "new_worker_id",
    "oldest_waiting",
    "plan",
    "plan_resend",
    "record",
    "release",
    "renew",
    "retry_now",
    "sent_entry_ids",
    "sent_for_period",
    "temporary_failure",
    "waiting",
    "waiting_for",
]
