"""Pure pieces of the web: input mapping, the cross-site check, form tokens, client limits."""

from __future__ import annotations

import pytest
import time_machine
from starlette.datastructures import FormData
from starlette.requests import Request

from digestd.web import forms
from digestd.web.csrf import form_token_valid, make_form_token, same_origin
from digestd.web.ratelimit import ClientLimiter, WebLimits

SECRET = "unit-secret-key-0123456789"


def request_with(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": raw})


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({}, True),  # curl, scripts: no browser provenance at all
        ({"Origin": "https://digest.example.org"}, True),
        ({"Origin": "https://digest.example.org:443"}, True),
        ({"Origin": "HTTPS://Digest.Example.org", "Sec-Fetch-Site": "same-origin"}, True),
        ({"Sec-Fetch-Site": "none"}, True),  # typed into the address bar
        ({"Origin": "http://digest.example.org"}, False),  # scheme differs
        ({"Origin": "https://digest.example.org:8443"}, False),
        ({"Origin": "https://evil.example"}, False),
        ({"Origin": "null"}, False),
        ({"Origin": "https://digest.example.org", "Sec-Fetch-Site": "cross-site"}, False),
        ({"Sec-Fetch-Site": "same-site"}, False),
        ({"Origin": "https://[::1"}, False),  # unparsable
    ],
)
def test_same_origin(headers: dict[str, str], allowed: bool) -> None:
    assert same_origin(request_with(headers), "https://digest.example.org") is allowed


def test_form_tokens_are_bound_to_their_form_and_expire() -> None:
    with time_machine.travel(1_800_000_000, tick=False):
        token = make_form_token(SECRET, "subscribe")
    issued = 1_800_000_000.0
    assert form_token_valid(SECRET, "subscribe", token, issued + 60)
    assert form_token_valid(SECRET, "subscribe", token, issued + 24 * 3600)
    assert not form_token_valid(SECRET, "subscribe", token, issued + 24 * 3600 + 1)
    assert not form_token_valid(SECRET, "preferences", token, issued + 60)
    assert not form_token_valid("another-secret-key-0123", "subscribe", token, issued + 60)
    assert not form_token_valid(SECRET, "subscribe", token[:-2] + "xx", issued + 60)
    assert not form_token_valid(SECRET, "subscribe", None, issued)
    assert not form_token_valid(SECRET, "subscribe", "x" * 600, issued)


def test_client_limits_refuse_past_the_window_and_count_per_client() -> None:
    limiter = ClientLimiter(WebLimits(subscribe_per_client="2/minute;3/hour"))
    with time_machine.travel(1_800_000_000, tick=False):
        assert limiter.hit("subscribe", "a") is None
        assert limiter.hit("subscribe", "a") is None
        wait = limiter.hit("subscribe", "a")
        assert wait is not None and 1 <= wait <= 60
        assert limiter.hit("subscribe", "b") is None  # another client is unaffected
        assert limiter.hit("post", "a") is None  # another bucket too
    with time_machine.travel(1_800_000_000 + 61, tick=False):
        assert limiter.hit("subscribe", "a") is None  # the minute window moved on
        hourly = limiter.hit("subscribe", "a")  # but the hour allows only 3
        assert hourly is not None and hourly > 60


def test_form_fields_map_onto_preferences() -> None:
    form = FormData(
        [
            ("email", " Ada@Example.org "),
            ("categories", "cs.CL"),
            ("categories", "cs.LG"),
            ("other_categories", "q-bio.NC, astro-ph.GA cs.CL"),
            ("send_hour", "7"),
            ("send_weekday", "3"),
            ("timezone", "europe/berlin"),
            ("frequency", "weekly"),
        ]
    )
    parsed = forms.validate(forms.from_form(form), need_email=True)
    assert parsed.ok and parsed.prefs is not None
    assert parsed.email == "ada@example.org"
    assert parsed.prefs.categories == ["cs.CL", "cs.LG", "q-bio.NC", "astro-ph.GA"]
    assert (parsed.prefs.send_hour, parsed.prefs.send_weekday) == (7, 3)
    assert parsed.prefs.timezone == "Europe/Berlin"


def test_each_bad_field_keeps_its_own_one_line_message() -> None:
    data = {"email": "x@", "send_hour": "noon", "max_items": "0", "format": "pdf"}
    parsed = forms.validate(data, need_email=True)
    assert not parsed.ok and parsed.prefs is None
    assert set(parsed.errors) == {"email", "send_hour", "max_items", "format"}
    assert "hour must be a whole number" in parsed.errors["send_hour"].lower()
    assert all(m[0].isupper() and "\n" not in m for m in parsed.errors.values())


def test_preference_changes_start_from_what_is_stored() -> None:
    stored = forms.Preferences(topics="old", send_hour=5, timezone="Asia/Tokyo")
    parsed = forms.validate({"send_hour": "6"}, base=stored, need_email=False)
    assert parsed.prefs is not None
    assert (parsed.prefs.topics, parsed.prefs.send_hour, parsed.prefs.timezone) == (
        "old",
        6,
        "Asia/Tokyo",
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ("a@example.org", "body"),
        ({"email": 5}, "email"),
        ({"email": "a@b.org", "max_items": 2.5}, "max_items"),
        ({"email": "a@b.org", "max_items": False}, "max_items"),
        ({"email": "a@b.org", "categories": {"a": 1}}, "categories"),
        ({"email": "a@b.org", "admin": True}, "admin"),
    ],
)
def test_json_types_are_checked_before_values(body: object, field: str) -> None:
    _, errors = forms.check_json(body, forms.SUBSCRIBE_FIELDS)
    assert list(errors) == [field]
