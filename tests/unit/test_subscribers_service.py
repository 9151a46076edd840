"""The subscribers service: validation, changes and their audit events, forgetting a person."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlmodel import select

from digestd.core.db import session_scope
from digestd.core.models import Delivery, Entry, Event, Subscriber, Vote
from digestd.delivery.deliveries import entry_ids
from digestd.subscribers.lifecycle import (
    ADDED,
    FORGOTTEN,
    STATUS,
    UPDATED,
    InvalidInput,
    Preferences,
    SubscriberExists,
    add_subscriber,
    confirm,
    forget,
    get_by_email,
    normalize_email,
    parse_categories,
    parse_weekday,
    unsubscribe,
    update_preferences,
    validate_timezone,
)

NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)


# ---- pure validation ---------------------------------------------------------------------


def test_normalize_email_one_form_per_person() -> None:
    assert normalize_email("  Ada.Lovelace@EXAMPLE.org ") == "ada.lovelace@example.org"
    assert normalize_email("ada@xn--bcher-kva.de") == "ada@bücher.de"


@pytest.mark.parametrize(
    ("raw", "hint"),
    [
        ("", "empty"),
        ("not-an-address", "@"),
        ("ada@", "after the @"),
        ("a b@example.org", "invalid characters"),
        ("ada@localhost", "period"),
        ("ada@example.test", "special-use"),
    ],
)
def test_normalize_email_rejects_with_one_line(raw: str, hint: str) -> None:
    with pytest.raises(InvalidInput) as err:
        normalize_email(raw)
    message = str(err.value)
    assert "\n" not in message
    assert hint.lower() in message.lower()


def test_timezones_are_iana_names() -> None:
    assert validate_timezone("Europe/Berlin") == "Europe/Berlin"
    assert validate_timezone("america/sao_paulo") == "America/Sao_Paulo"
    for bad in ("Mars/Olympus", "", "CEST+2", "../etc/passwd"):
        with pytest.raises(InvalidInput, match="unknown time zone"):
            validate_timezone(bad)


def test_weekdays_and_categories() -> None:
    assert parse_weekday("tue") == 1
    assert parse_weekday("Sunday") == 6
    assert parse_weekday(3) == 3
    with pytest.raises(InvalidInput, match="weekday"):
        parse_weekday("someday")
    assert parse_categories(" cs.CL, cs.LG,,cs.CL,q-bio.NC ") == ["cs.CL", "cs.LG", "q-bio.NC"]
    with pytest.raises(InvalidInput, match="category 'cs CL'"):
        parse_categories("cs CL")


def test_preferences_validated_coerces_and_explains() -> None:
    prefs = Preferences(
        name=" Ada ",
        topics="  KV   cache ",
        categories="cs.CL,cs.LG",  # type: ignore[arg-type]
        frequency="Weekly",
        send_hour="7",  # type: ignore[arg-type]
        send_weekday="fri",  # type: ignore[arg-type]
        timezone="asia/tokyo",
        max_items="5",  # type: ignore[arg-type]
        format="TEXT",
    ).validated()
    assert prefs == Preferences(
        name="Ada",
        topics="KV cache",
        categories=["cs.CL", "cs.LG"],
        frequency="weekly",
        send_hour=7,
        send_weekday=4,
        timezone="Asia/Tokyo",
        max_items=5,
        format="text",
    )
    cases = {
        "send_hour": (24, "hour must be between 0 and 23"),
        "max_items": (0, "max items must be between 1 and 100"),
        "frequency": ("hourly", "frequency must be one of daily, weekly"),
        "format": ("pdf", "format must be one of html, text"),
        "name": ("a\nb", "name must be on one line"),
        "timezone": ("Nowhere", "unknown time zone"),
    }
    for field_name, (value, reason) in cases.items():
        with pytest.raises(InvalidInput, match=reason):
            Preferences(**{field_name: value}).validated()


# ---- storage (SQLite and PostgreSQL) -----------------------------------------------------


def _events(session, sub_id=None) -> list[Event]:
    stmt = select(Event).order_by(Event.id)
    if sub_id is not None:
        stmt = stmt.where(Event.subscriber_id == sub_id)
    return list(session.exec(stmt).all())


def test_add_writes_subscriber_and_audit_event(app) -> None:
    with session_scope(app.engine) as s:
        sub = add_subscriber(
            s,
            "Ada@Example.org",
            Preferences(name="Ada", categories=["cs.CL"], timezone="Europe/Berlin"),
            status="active",
            actor="cli:subscribers add",
            now=NOW,
        )
        sub_id = sub.id
    with session_scope(app.engine) as s:
        stored = get_by_email(s, "ADA@example.org")
        assert stored is not None and stored.id == sub_id
        assert stored.email == "ada@example.org"
        assert stored.categories == ["cs.CL"]
        assert stored.confirmed_at == NOW
        [event] = _events(s, sub_id)
        assert (event.action, event.actor, event.created_at) == (ADDED, "cli:subscribers add", NOW)
        assert event.detail["status"] == "active"
        assert event.detail["timezone"] == "Europe/Berlin"


def test_add_refuses_a_known_address_in_any_status(app) -> None:
    with session_scope(app.engine) as s:
        sub = add_subscriber(
            s, "bo@example.org", Preferences(), status="active", actor="t", now=NOW
        )
        unsubscribe(s, sub, actor="t", now=NOW, way="admin")
    with session_scope(app.engine) as s, pytest.raises(SubscriberExists) as err:
        add_subscriber(s, "BO@example.org", Preferences(), status="pending", actor="t", now=NOW)
    assert err.value.subscriber.status == "unsubscribed"
    assert "already exists (status unsubscribed)" in str(err.value)


def test_invalid_input_stores_nothing(app) -> None:
    with pytest.raises(InvalidInput, match="hour"), session_scope(app.engine) as s:
        add_subscriber(
            s, "c@example.org", Preferences(send_hour=99), status="active", actor="t", now=NOW
        )
    with session_scope(app.engine) as s:
        assert s.exec(select(Subscriber)).all() == []
        assert _events(s) == []


def test_update_records_only_real_changes(app, clock) -> None:
    with session_scope(app.engine) as s:
        sub = add_subscriber(s, "d@example.org", Preferences(), status="active", actor="t", now=NOW)
    later = clock.advance(hours=1)
    with session_scope(app.engine) as s:
        sub = get_by_email(s, "d@example.org")
        diff = update_preferences(
            s,
            sub,
            {"send_hour": "9", "categories": "cs.LG", "format": "html"},
            actor="u",
            now=later,
        )
        assert diff == {"send_hour": [8, 9], "categories": [[], ["cs.LG"]]}
        assert update_preferences(s, sub, {"send_hour": 9}, actor="u", now=later) == {}
        with pytest.raises(InvalidInput, match="unknown preference 'email'"):
            update_preferences(s, sub, {"email": "x@example.org"}, actor="u", now=later)
    with session_scope(app.engine) as s:
        sub = get_by_email(s, "d@example.org")
        assert (sub.send_hour, sub.categories) == (9, ["cs.LG"])
        events = _events(s, sub.id)
        assert [e.action for e in events] == [ADDED, UPDATED]
        assert events[1].actor == "u" and events[1].created_at == later
        assert events[1].detail == {"changes": {"send_hour": [8, 9], "categories": [[], ["cs.LG"]]}}


def test_status_changes_set_times_and_events(app, clock) -> None:
    with session_scope(app.engine) as s:
        sub = add_subscriber(
            s, "e@example.org", Preferences(), status="pending", actor="t", now=NOW
        )
        assert sub.confirmed_at is None
        confirmed = clock.advance(minutes=5)
        assert confirm(s, sub, actor="web", now=confirmed)
        assert not confirm(s, sub, actor="web", now=confirmed)
        gone = clock.advance(days=1)
        with pytest.raises(InvalidInput, match="unsubscribe way must be one of"):
            unsubscribe(s, sub, actor="web", now=gone, way="smoke signal")
        assert unsubscribe(s, sub, actor="web", now=gone, way="one-click")
        sub_id = sub.id
    with session_scope(app.engine) as s:
        sub = s.get(Subscriber, sub_id)
        assert (sub.status, sub.confirmed_at, sub.unsubscribed_at) == (
            "unsubscribed",
            confirmed,
            gone,
        )
        status_events = [e for e in _events(s, sub_id) if e.action == STATUS]
        assert [e.detail for e in status_events] == [
            {"from": "pending", "to": "active", "reason": ""},
            {"from": "active", "to": "unsubscribed", "reason": "", "way": "one-click"},
        ]


def test_forget_leaves_no_personal_data(app) -> None:
    with session_scope(app.engine) as s:
        keep = add_subscriber(
            s, "keep@example.org", Preferences(), status="active", actor="t", now=NOW
        )
        sub = add_subscriber(
            s,
            "secret.person@example.org",
            Preferences(name="Secret Person", topics="private topic"),
            status="active",
            actor="t",
            now=NOW,
        )
        update_preferences(s, sub, {"name": "Secret P."}, actor="t", now=NOW)
        entry = Entry(canonical_key="arxiv:1", title="t", published_at=NOW, ingested_at=NOW)
        s.add(entry)
        s.flush()
        for who in (sub, keep):
            d = Delivery(
                subscriber_id=who.id,
                period="2026-11-26",
                message_id=f"<{who.id}@x>",
                created_at=NOW,
                entry_ids=str(entry.id),
            )
            s.add(d)
            s.flush()
            s.add(Vote(subscriber_id=who.id, entry_id=entry.id, value=1, created_at=NOW))
        sub_id, keep_id, entry_id = sub.id, keep.id, entry.id
    with session_scope(app.engine) as s:
        event = forget(s, s.get(Subscriber, sub_id), actor="cli:subscribers remove", now=NOW)
        event_id = event.id
    with session_scope(app.engine) as s:
        assert s.get(Subscriber, sub_id) is None
        assert get_by_email(s, "secret.person@example.org") is None
        kept = s.exec(select(Delivery)).all()
        assert [d.subscriber_id for d in kept] == [keep_id]
        assert entry_ids(s, kept[0].id) == [entry_id]  # type: ignore[arg-type]
        dump = repr([(e.subscriber_id, e.action, e.detail) for e in _events(s)])
        for personal in ("secret", "Secret", "private topic"):
            assert personal not in dump
        forgotten = [e for e in _events(s) if e.action == FORGOTTEN]
        assert len(forgotten) == 1 and forgotten[0].id == event_id
        assert forgotten[0].subscriber_id is None
        assert forgotten[0].actor == "cli:subscribers remove"
        assert forgotten[0].detail == {
            "deliveries_deleted": 1,
            "events_deleted": 2,
            "votes_deleted": 1,
        }
        # their votes are gone too (the only learning signal is personal data)
        assert [v.subscriber_id for v in s.exec(select(Vote)).all()] == [keep_id]
        # the other subscriber is untouched
        assert s.get(Subscriber, keep_id).email == "keep@example.org"
