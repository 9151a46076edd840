"""What every provider's check shares: the refusal, the time window, the replay record."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from digestd.core.models import WebhookSeen

WINDOW = timedelta(minutes=5)  # SendGrid, Mailgun, Standard Webhooks: timestamps this fresh
KEEP_SEEN = timedelta(days=2)  # one-time values remembered at least this long (> any window)
MAX_JSON_DEPTH = 32


class Refused(Exception):
    """The request is not from the provider, or is stale or replayed: 401, nothing changed.
    The message is one line for the log (never a secret)."""


@dataclass
class Verified:
    """A request whose signature checked: its payload and its one-time values."""

    payload: Any
    once: list[str] = field(default_factory=list)  # accepted once each (replay keys)


def within(timestamp: str, now: datetime, window: timedelta = WINDOW) -> datetime:
    """The UNIX timestamp `timestamp` as a datetime, when within `window` of `now`."""
    try:
        when = datetime.fromtimestamp(int(timestamp.strip()), tz=now.tzinfo)
    except (ValueError, OverflowError, OSError):
        raise Refused(f"timestamp {timestamp[:20]!r} is not a UNIX time") from None
    if abs(now - when) > window:
        raise Refused(f"timestamp {when:%Y-%m-%d %H:%M:%S} is outside the {window} window")
    return when


def as_dict(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one (payloads are read defensively)."""
    return value if isinstance(value, dict) else {}


def load_json(body: bytes) -> Any:
    """The JSON body, or ValueError (a 400) when it is not JSON or nests too deeply."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise ValueError("the body is not JSON") from None
    _depth(data, 0)
    return data


def _depth(value: Any, level: int) -> None:
    if level > MAX_JSON_DEPTH:
        raise ValueError(f"the JSON nests deeper than {MAX_JSON_DEPTH}")
    if isinstance(value, dict):
        for v in value.values():
            _depth(v, level + 1)
    elif isinstance(value, list):
        for v in value:
            _depth(v, level + 1)


def accept_once(session: Session, provider: str, keys: list[str], now: datetime) -> bool:
    """Remember `keys` for `provider`; False when one was seen already (a replay). The
    unique key makes two replicas that race on one value agree: one insert fails."""
    keys = [k[:255] for k in keys if k]
    if not keys:
        return True
    session.exec(delete(WebhookSeen).where(col(WebhookSeen.seen_at) < now - KEEP_SEEN))
    found = session.exec(
        select(WebhookSeen.id).where(
            WebhookSeen.provider == provider, col(WebhookSeen.key).in_(keys)
        )
    ).first()
    if found is not None:
        return False
    try:
        with session.begin_nested():
            session.add_all(WebhookSeen(provider=provider, key=k, seen_at=now) for k in keys)
    except IntegrityError:
        return False
    return True


def release(session: Session, provider: str, keys: list[str]) -> None:
    """Forget `keys` again (their request was not recorded after all)."""
    keys = [k[:255] for k in keys if k]
    if keys:
        session.exec(
            delete(WebhookSeen).where(
                col(WebhookSeen.provider) == provider, col(WebhookSeen.key).in_(keys)
            )
        )
