"""What the rest of digestd may read about subscribers, in the caller's own (read) transaction.

Planning and sending page through who gets digests, stats and /metrics count, inbound finds
a subscriber by id or address, the CLI and `preview` show one. Every change goes through
the use cases (`signup`, `manage`, `importing`, `bounce_policy`), never through here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from digestd.core.models import Subscriber
from digestd.core.statuses import MailKind, SubscriberStatus
from digestd.subscribers import store
from digestd.subscribers.lifecycle import may_mail
from digestd.subscribers.preferences import WEEKDAYS, normalize_email
from digestd.subscribers.store import (
    PLAN_COLUMNS,
    SEND_COLUMNS,
    TABLE_NAMES,
    PlanRow,
    SendRow,
    StatusChanges,
    active_page,
    confirmed_per_day,
    count_by_status,
    count_matching,
    for_sending,
    list_page,
    status_changes_per_day,
)

__all__ = [
    "PLAN_COLUMNS",
    "SEND_COLUMNS",
    "TABLE_NAMES",
    "PlanRow",
    "SendRow",
    "StatusChanges",
    "active_page",
    "by_email",
    "confirmed_per_day",
    "consent_dict",
    "count_by_status",
    "count_matching",
    "for_sending",
    "get",
    "list_page",
    "status_changes_per_day",
    "subscriber_dict",
]


def get(session: Session, sub_id: int) -> Subscriber | None:
    """The subscriber with this id, or None."""
    return store.get(session, sub_id)


def by_email(session: Session, email: str) -> Subscriber | None:
    """The subscriber with this address (normalized first; InvalidInput if it is not one)."""
    return store.by_email(session, normalize_email(email))


def _ts(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def consent_dict(sub: Subscriber) -> dict[str, Any]:
    """The consent record: when and how it was given (`given_by`: web, import, admin, mail;
    the web form's client address as `ip`), when the address was confirmed, and when and
    how the consent ended (an unsubscribe: `ended_by` person, mail, complaint or admin)."""
    ended = sub.status == SubscriberStatus.UNSUBSCRIBED
    return {
        "given_at": _ts(sub.consent_given_at),
        "given_by": sub.consent_given_by.value if sub.consent_given_by else None,
        "source": sub.consent_source,
        "ip": sub.consent_ip or None,
        "confirmed_at": _ts(sub.confirmed_at),
        "ended_at": _ts(sub.unsubscribed_at) if ended else None,
        "ended_by": sub.stopped_by.value if ended and sub.stopped_by else None,
    }


def subscriber_dict(sub: Subscriber) -> dict[str, Any]:
    """The stable public view of a subscriber (CLI `--json`, APIs): documented fields only.
    `stopped_by` is null while mail may go; `may_mail` says whether digests go there now."""
    return {
        "id": sub.id,
        "email": sub.email,
        "name": sub.name,
        "status": str(sub.status),
        "topics": sub.topics,
        "categories": list(sub.categories),
        "follows": list(sub.follows),
        "muted_authors": list(sub.muted_authors),
        "frequency": sub.frequency,
        "send_hour": sub.send_hour,
        "send_weekday": WEEKDAYS[sub.send_weekday],
        "timezone": sub.timezone,
        "max_items": sub.max_items,
        "format": sub.format,
        "created_at": _ts(sub.created_at),
        "confirmed_at": _ts(sub.confirmed_at),
        "unsubscribed_at": _ts(sub.unsubscribed_at),
        "bounce_count": sub.bounce_count,
        "stopped_by": sub.stopped_by.value if sub.stopped_by else None,
        "stopped_at": _ts(sub.stopped_at),
        "suppressed": bool(sub.suppressed),
        "may_mail": may_mail(sub, MailKind.DIGEST),
        "consent": consent_dict(sub),
    }
