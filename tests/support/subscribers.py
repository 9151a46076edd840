"""Helpers for the subscriber CLI tests: run the real typer app in-process on a given database."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from click.testing import Result
from sqlmodel import Session
from typer.testing import CliRunner

from digestd.cli.main import app
from digestd.core.models import Subscriber
from digestd.core.statuses import ConsentVia, SubscriberStatus
from digestd.subscribers import lifecycle, store
from digestd.subscribers.lifecycle import Consent
from digestd.subscribers.preferences import Preferences, normalize_email

Invoke = Callable[..., Result]


def make_invoke(db_url: str, **extra_env: str) -> Invoke:
    """`invoke("subscribers", "list")` runs `digestd subscribers list` against `db_url`."""
    runner = CliRunner()
    env = {"DIGESTD_DATABASE_URL": db_url, "COLUMNS": "200", "NO_COLOR": "1", **extra_env}

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(app, list(args), env=env, input=input, catch_exceptions=False)

    return invoke


def json_of(result: Result) -> Any:
    """The JSON document a `--json` command printed (asserting it succeeded)."""
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# ---- test setup in a session of the test's own (the app goes through the use cases) --------


def add_subscriber(
    session: Session,
    email: str,
    prefs: Preferences | None = None,
    *,
    status: str = "active",
    actor: str = "test",
    now: datetime,
) -> Subscriber:
    """A stored subscriber in `status`, added by an admin, as the store writes it."""
    consent = Consent(given_at=now, given_by=ConsentVia.ADMIN, source="test")
    sub, change = lifecycle.new_subscriber(
        normalize_email(email),
        (prefs or Preferences()).validated(),
        status=SubscriberStatus(status),
        now=now,
        consent=consent,
    )
    store.add(session, sub, change, actor=actor, now=now)
    return sub


def get_by_email(session: Session, email: str) -> Subscriber | None:
    """The subscriber with this address, or None."""
    return store.by_email(session, normalize_email(email))


def change(
    session: Session, sub: Subscriber, step: lifecycle.Change | None, *, now: datetime
) -> bool:
    """Save one lifecycle change made on `sub` (e.g. `lifecycle.bounce(sub, …)`)."""
    return store.save(session, sub, [step], actor="test", now=now)


def record_event(
    session: Session, sub_id: int | None, action: str, *, actor: str, now: datetime, **detail: Any
) -> None:
    """Append one audit event, as the store writes them."""
    sub = store.get(session, sub_id) if sub_id is not None else None
    store.record(session, sub, lifecycle.Change(action, detail), actor=actor, now=now)
