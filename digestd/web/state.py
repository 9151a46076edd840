"""What the web app keeps for its lifetime, stored on `app.state.web`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from jinja2 import Environment

from digestd.core.context import AppContext
from digestd.subscribers.optin import ConfirmationSender
from digestd.web.caching import PageCache
from digestd.web.ratelimit import ClientLimiter, WebLimits

# Returns True while the daemon's scheduler runs; set by `digestd run` (absent: web alone).
SchedulerHeartbeat = Callable[[], bool]


@dataclass
class WebState:
    """The context, templates, limiters and mail sender of one app instance."""

    ctx: AppContext
    env: Environment
    limits: WebLimits
    limiter: ClientLimiter
    sender: ConfirmationSender
    # Rendered public pages and feeds by ETag (web/caching.py).
    pages: PageCache = field(default_factory=PageCache)
