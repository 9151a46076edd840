"""The explicit application context handed from entry points to services."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from sqlalchemy.engine import Engine

from digestd.core.config import Settings
from digestd.core.db import at_head, make_engine, session_scope, upgrade
from digestd.core.metrics import Metrics
from digestd.core.models import Meta, utcnow

Clock = Callable[[], datetime]


@dataclass
class AppContext:
    """Settings, the database engine and the clock: everything a service needs from outside."""

    settings: Settings
    clock: Clock = field(default=utcnow)
    actor: str = "cli"
    migrated: bool = field(default=False, repr=False)  # migrate() ran in this process

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings.database_url)

    @cached_property
    def metrics(self) -> Metrics:
        """This process's Prometheus metrics (its own registry; served on /metrics)."""
        return Metrics()

    def now(self) -> datetime:
        """The current time as aware UTC, from the injected clock."""
        return self.clock()

    def migrate(self) -> None:
        """Apply migrations; every command that needs the schema calls this first (one
        query when the schema is already current)."""
        if not at_head(self.engine):
            upgrade(self.engine)
        self.migrated = True

    @cached_property
    def secret_key(self) -> str:
        """DIGESTD_SECRET_KEY, or one generated once and kept in the database (zero-config)."""
        if self.settings.secret_key:
            return self.settings.secret_key
        with session_scope(self.engine) as session:
            row = session.get(Meta, "secret_key")
            if row is None:
                row = Meta(key="secret_key", value=secrets.token_urlsafe(32))
                session.add(row)
            return row.value

    def dispose(self) -> None:
        """Close pooled connections (end of a command, or a test)."""
        if "engine" in self.__dict__:
            self.engine.dispose()
