"""The subscribers service: validation, changes and their audit events, forgetting a person."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlmodel import select

from digestd.core.db import session_scope
from digestd.core.models import Delivery, Entry, Event, Subscriber, Vote
from digestd.core.statuses import Move
from digestd.delivery.deliveries import entry_ids
from digestd.subscribers import manage, signup
from digestd.subscribers.lifecycle import ADDED, FORGOTTEN, STATUS, UPDATED
from digestd.subscribers.manage import ByEmail
from digestd.subscribers.preferences import (
    InvalidInput,
    Preferences,
    deliverable_email,
    normalize_email,
    parse_categories,
    parse_weekday,
    validate_timezone,
)
from tests.support.subscribers import get_by_email

# About what the database itself does (the subscriber store's own statements):
# the PostgreSQL twins stay in the quick check (tests/conftest.py).
pytestmark = pytest.mark.backend

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


@pytest.mark.parametrize("bad", ["Ada\x00Lovelace", "Ada\x1b[31m", "A\u2028B", "tab\there\x7f"])
def test_control_characters_are_refused_in_names_and_topics(bad: str) -> None:
    """Issue 23: a NUL byte in a name reached the To: header on the wire."""
    for field_name in ("name", "topics"):
        with pytest.raises(InvalidInput, match=r"control characters|one line") as err:
            Preferences(**{field_name: bad}).validated()
        assert "\n" not in str(err.value)
    assert Preferences(name="Zoë O'Neil, PhD").validated().name == "Zoë O'Neil, PhD"


def test_addresses_the_relay_cannot_deliver_are_refused_at_sign_up() -> None:
    """Issue 23: a non-ASCII local part without SMTPUTF8, a local part over 64 octets."""
    assert deliverable_email("Zoe@example.org", smtputf8=False) == "zoe@example.org"
    with pytest.raises(InvalidInput, match="non-ASCII"):
        deliverable_email("zoë@example.org", smtputf8=False)
    assert deliverable_email("zoë@example.org", smtputf8=True) == "zoë@example.org"
    # 63 characters but 65 octets: what mail servers count
    long_local = "é" * 2 + "a" * 61
    with pytest.raises(InvalidInput, match="65 bytes"):
        deliverable_email(f"{long_local}@example.org", smtputf8=True)
    with pytest.raises(InvalidInput):
        deliverable_email("a" * 65 + "@example.org", smtputf8=False)


# ---- through the use cases (SQLite and PostgreSQL) ----------------------------------------


def _events(session, sub_id=None) -> list[Event]:
    stmt = select(Event).order_by(Event.id)
    if sub_id is not None:
        stmt = stmt.where(Event.subscriber_id == sub_id)
    return list(session.exec(stmt).all())


def test_add_writes_subscriber_consent_and_audit_event(app) -> None:
    app.actor = "cli:subscribers add"
    changes = {"name": "Ada", "categories": ["cs.CL"], "timezone": "Europe/Berlin"}
    verb, view = signup.add_by_admin(app, "Ada@Example.org", changes, confirmed=True)
    assert verb == "added" and view["status"] == "active" and view["may_mail"] is True
    assert view["consent"]["given_by"] == "admin" and view["stopped_by"] is None
    with session_scope(app.engine) as s:
        stored = get_by_email(s, "ADA@example.org")
        assert stored is not None and stored.id == view["id"]
        assert stored.email == "ada@example.org"
        assert stored.categories == ["cs.CL"]
        assert stored.confirmed_at == app.now()
        [event] = _events(s, stored.id)
        assert (event.action, event.actor) == (ADDED, "cli:subscribers add")
        assert event.detail["status"] == "active"
        assert event.detail["timezone"] == "Europe/Berlin"


def test_add_refuses_a_known_address_unless_it_comes_back_with_consent(app) -> None:
    signup.add_by_admin(app, "bo@example.org", {}, confirmed=True)
    manage.unsubscribe(app, ByEmail("bo@example.org"), way="admin")
    with pytest.raises(InvalidInput, match="add --confirmed to subscribe it again"):
        signup.add_by_admin(app, "BO@example.org", {}, confirmed=False)
    verb, view = signup.add_by_admin(app, "BO@example.org", {}, confirmed=True)
    assert (verb, view["status"]) == ("re-subscribed", "active")
    with pytest.raises(InvalidInput, match="already exists"):
        signup.add_by_admin(app, "bo@example.org", {}, confirmed=True)


def test_invalid_input_stores_nothing(app) -> None:
    with pytest.raises(InvalidInput, match="hour"):
        signup.add_by_admin(app, "c@example.org", {"send_hour": 99}, confirmed=True)
    with session_scope(app.engine) as s:
        assert s.exec(select(Subscriber)).all() == []
        assert _events(s) == []


def test_update_records_only_real_changes(app, clock) -> None:
    signup.add_by_admin(app, "d@example.org", {}, confirmed=True)
    later = clock.advance(hours=1)
    app.actor = "u"
    done = manage.update(
        app, ByEmail("d@example.org"), {"send_hour": "9", "categories": "cs.LG", "format": "html"}
    )
    assert done.diff == {"send_hour": [8, 9], "categories": [[], ["cs.LG"]]}
    assert manage.update(app, ByEmail("d@example.org"), {"send_hour": 9}).diff == {}
    with pytest.raises(InvalidInput, match="unknown preference 'email'"):
        manage.update(app, ByEmail("d@example.org"), {"email": "x@example.org"})
    with session_scope(app.engine) as s:
        sub = get_by_email(s, "d@example.org")
        assert (sub.send_hour, sub.categories) == (9, ["cs.LG"])
        events = _events(s, sub.id)
        assert [e.action for e in events] == [ADDED, UPDATED]
        assert events[1].actor == "u" and events[1].created_at == later
        assert events[1].detail == {"changes": {"send_hour": [8, 9], "categories": [[], ["cs.LG"]]}}


def test_status_changes_set_times_and_events(app, clock) -> None:
    signup.add_by_admin(app, "e@example.org", {}, confirmed=False)
    confirmed = clock.advance(minutes=5)
    assert manage.change_status(app, ByEmail("e@example.org"), Move.CONFIRM).changed
    assert not manage.change_status(app, ByEmail("e@example.org"), Move.CONFIRM).changed
    gone = clock.advance(days=1)
    with pytest.raises(InvalidInput, match="unsubscribe way must be one of"):
        manage.unsubscribe(app, ByEmail("e@example.org"), way="smoke signal")
    assert manage.unsubscribe(app, ByEmail("e@example.org"), way="one-click").changed
    with session_scope(app.engine) as s:
        sub = get_by_email(s, "e@example.org")
        assert (sub.status, sub.confirmed_at, sub.unsubscribed_at, sub.stopped_by) == (
            "unsubscribed",
            confirmed,
            gone,
            "person",
        )
        status_events = [e for e in _events(s, sub.id) if e.action == STATUS]
        assert [(e.detail["from"], e.detail["to"], e.detail.get("way")) for e in status_events] == [
            ("pending", "active", None),
            ("active", "unsubscribed", "one-click"),
        ]


def test_forget_leaves_no_personal_data(app) -> None:
    signup.add_by_admin(app, "keep@example.org", {}, confirmed=True)
    prefs = {"name": "Secret Person", "topics": "private topic"}
    signup.add_by_admin(app, "secret.person@example.org", prefs, confirmed=True)
    manage.update(app, ByEmail("secret.person@example.org"), {"name": "Secret P."})
    with session_scope(app.engine) as s:
        sub = get_by_email(s, "secret.person@example.org")
        keep = get_by_email(s, "keep@example.org")
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
    app.actor = "cli:subscribers remove"
    gone = manage.forget(app, ByEmail("secret.person@example.org"))
    assert (gone.deliveries, gone.events, gone.votes) == (1, 2, 1)
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
        assert len(forgotten) == 1
        assert forgotten[0].subscriber_id is None
        assert forgotten[0].actor == "cli:subscribers remove"
        assert forgotten[0].detail == {
            "deliveries_deleted": 1,
            "events_deleted": 2,
            "votes_deleted": 1,
            "library_deleted": 0,
        }
        # their votes are gone too (the only learning signal is personal data)
        assert [v.subscriber_id for v in s.exec(select(Vote)).all()] == [keep_id]
        # the other subscriber is untouched
        assert s.get(Subscriber, keep_id).email == "keep@example.org"
