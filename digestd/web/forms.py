"""Turning form fields or a JSON object into validated preferences, one message per bad field.

Every value is checked by the subscribers service (`Preferences.validated`,
`normalize_email`); this module only maps web input onto it and keeps each
error next to the field it belongs to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from starlette.datastructures import FormData

from digestd.ranking.authors import dedupe, without
from digestd.subscribers.preferences import (
    AUTHOR_FIELDS,
    PREFERENCE_FIELDS,
    InvalidInput,
    Preferences,
    deliverable_email,
    normalize_email,
    parse_authors,
)

# The fields a person may send, and what JSON types each accepts.
_STRING_FIELDS = ("email", "name", "topics", "frequency", "timezone", "format")
_INT_FIELDS = ("send_hour", "send_weekday", "max_items")
# Authors are followed and muted on the preference page, the CLI and by mail, not at sign-up.
SUBSCRIBE_FIELDS = ("email", *(f for f in PREFERENCE_FIELDS if f not in AUTHOR_FIELDS))

# Offered as checkboxes; any other valid category can be typed in (or sent as JSON).
COMMON_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("cs.AI", "Artificial intelligence"),
    ("cs.CL", "Computation and language"),
    ("cs.CV", "Computer vision"),
    ("cs.LG", "Machine learning"),
    ("stat.ML", "Machine learning (statistics)"),
    ("cs.IR", "Information retrieval"),
    ("cs.RO", "Robotics"),
    ("cs.NE", "Neural and evolutionary computing"),
    ("cs.CR", "Cryptography and security"),
    ("cs.SE", "Software engineering"),
)

# Offered when the browser cannot tell us its zone (JavaScript off).
COMMON_TIMEZONES: tuple[str, ...] = (
    "UTC",
    "Europe/London",
    "Europe/Lisbon",
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/Madrid",
    "Europe/Rome",
    "Europe/Amsterdam",
    "Europe/Stockholm",
    "Europe/Warsaw",
    "Europe/Athens",
    "Europe/Istanbul",
    "Europe/Moscow",
    "Africa/Cairo",
    "Africa/Lagos",
    "Africa/Johannesburg",
    "Asia/Dubai",
    "Asia/Kolkata",
    "Asia/Bangkok",
    "Asia/Singapore",
    "Asia/Shanghai",
    "Asia/Hong_Kong",
    "Asia/Seoul",
    "Asia/Tokyo",
    "Australia/Perth",
    "Australia/Sydney",
    "Pacific/Auckland",
    "America/Sao_Paulo",
    "America/Argentina/Buenos_Aires",
    "America/Mexico_City",
    "America/New_York",
    "America/Toronto",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
)

WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass
class Parsed:
    """Validated input, or the errors: {field: one line}. `values` echoes what was sent."""

    email: str = ""
    prefs: Preferences | None = None
    errors: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:]


def _email_message(message: str) -> str:
    # The service quotes the input first ("'x@' is not a valid ..."); on a page the input
    # is right above the message, so lead with what is wrong.
    _, sep, reason = message.partition(" is not a valid email address: ")
    if sep:
        return f"This is not a valid email address: {reason}"
    return _sentence(message)


def from_form(form: FormData) -> dict[str, Any]:
    """Raw values of a submitted form: category checkboxes plus the free-text extra ones."""
    data: dict[str, Any] = {}
    for name in ("email", "name", "topics", "frequency", "timezone", "format", *_INT_FIELDS):
        value = form.get(name)
        if isinstance(value, str):
            data[name] = value
    if "categories" in form or "other_categories" in form:
        cats = [v for v in form.getlist("categories") if isinstance(v, str)]
        other = form.get("other_categories")
        if isinstance(other, str):
            cats.extend(other.replace(" ", ",").split(","))
        data["categories"] = cats
    for name in AUTHOR_FIELDS:  # one name a line, or separated by semicolons
        value = form.get(name)
        if isinstance(value, str):
            data[name] = value
    return data


def check_json(body: Any, allowed: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, str]]:
    """A JSON body's fields with their types checked, and the errors for those that are wrong."""
    if not isinstance(body, Mapping):
        return {}, {"body": "The body must be a JSON object."}
    data: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for key, value in body.items():
        if key not in allowed:
            errors[str(key)[:64]] = f"Unknown field {str(key)[:64]!r}."
        elif key in _STRING_FIELDS and not isinstance(value, str):
            errors[key] = f"{key} must be a string."
        elif key in _INT_FIELDS and (isinstance(value, bool) or not isinstance(value, (int, str))):
            errors[key] = f"{key} must be a whole number."
        elif key == "categories" and not (
            isinstance(value, str)
            or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        ):
            errors[key] = 'categories must be a list of strings like ["cs.CL"].'
        else:
            data[key] = value
    return data, errors


def validate(
    data: Mapping[str, Any],
    *,
    base: Preferences | None = None,
    need_email: bool,
    errors: dict[str, str] | None = None,
    smtputf8: bool | None = None,
) -> Parsed:
    """Check each field on its own (so every bad one gets its message), then all together.
    With `smtputf8` given (a sign-up), an address our relay could not deliver is refused."""
    out = Parsed(values=dict(data), errors=dict(errors or {}))
    start = base or Preferences()
    if need_email and "email" not in out.errors:
        raw = str(data.get("email", ""))
        try:
            if smtputf8 is None:
                out.email = normalize_email(raw)
            else:
                out.email = deliverable_email(raw, smtputf8=smtputf8)
        except InvalidInput as exc:
            out.errors["email"] = _email_message(str(exc))
    changes = {k: v for k, v in data.items() if k in PREFERENCE_FIELDS and k not in out.errors}
    for name, value in changes.items():
        try:
            replace(start, **{name: value}).validated()
        except InvalidInput as exc:
            out.errors[name] = _sentence(str(exc))
    if out.errors:
        return out
    try:
        out.prefs = replace(start, **changes).validated()
    except InvalidInput as exc:  # pragma: no cover - every field was checked above
        out.errors["form"] = _sentence(str(exc))
    return out


def prefs_values(prefs: Preferences) -> dict[str, Any]:
    """Stored preferences as form values (for pre-filling a form); authors one a line."""
    values = {f.name: getattr(prefs, f.name) for f in fields(prefs)}
    for name in AUTHOR_FIELDS:
        values[name] = "\n".join(values[name])
    return values


def follow_from_link(follows: list[str], query: Mapping[str, str]) -> tuple[str, str] | None:
    """What a preferences link from the `follow NAME` / `unfollow NAME` mail commands asks
    (`?follow=NAME`, `?unfollow=NAME`): the "Authors you follow" field with the change made
    and the notice saying to save it; None when it asks nothing valid. Nothing is saved."""
    for verb, doing in (("follow", "follow"), ("unfollow", "stop following")):
        raw = query.get(verb)
        if not raw:
            continue
        try:
            (name,) = parse_authors([raw])
        except (InvalidInput, ValueError):
            return None
        changed = [*follows, name] if verb == "follow" else without(follows, [name])
        notice = f"Press “Save preferences” to {doing} {name}."
        return "\n".join(dedupe(changed)), notice
    return None
