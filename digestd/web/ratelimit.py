"""Abuse limits for the subscription web.

Per client address: the `limits` library, in memory, per process (a client that
spreads over replicas gets at most N times the limit, which is fine for abuse
control). An IPv6 client is counted by its /64 network (`core.netaddr.client_key`).

Per email address: `digestd.subscribers.signup` counts the confirmations and command replies
of the last 24 hours in the database (`address_mail`), together, so that cap holds across
processes and replicas, survives a restart, and is the README's 3 a day in all.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from digestd.core.netaddr import client_key
from digestd.subscribers.optin import MAILS_PER_ADDRESS_PER_DAY


@dataclass(frozen=True)
class WebLimits:
    """How much one client / one address may ask for (limits' "N/period;M/period" syntax)."""

    subscribe_per_client: str = "5/minute;20/hour"
    posts_per_client: str = "60/minute"
    mails_per_email_per_day: int = MAILS_PER_ADDRESS_PER_DAY


class ClientLimiter:
    """Moving-window limits per client address, kept in this process's memory."""

    def __init__(self, limits: WebLimits) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._buckets: dict[str, list[RateLimitItem]] = {
            "subscribe": parse_many(limits.subscribe_per_client),
            "post": parse_many(limits.posts_per_client),
        }

    def hit(self, bucket: str, client: str) -> int | None:
        """Count one request; None when allowed, else the seconds to wait before retrying."""
        items = self._buckets[bucket]
        client = client_key(client)
        # Test every window first so a refused request does not use up the others.
        for item in items:
            if not self._limiter.test(item, bucket, client):
                reset = self._limiter.get_window_stats(item, bucket, client).reset_time
                return max(1, math.ceil(reset - time.time()))
        for item in items:
            self._limiter.hit(item, bucket, client)
        return None
