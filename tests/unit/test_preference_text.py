"""A name or topics that reach a mail header: control characters and line separators are
refused with the character named; other unusual spaces and letters are kept."""

from __future__ import annotations

import re

import pytest

from digestd.subscribers.preferences import InvalidInput, Preferences


@pytest.mark.parametrize(
    ("name", "found"),
    [("Ana\x00Ngata", "U+0000"), ("Ana\x1bNgata", "U+001B"), ("Ana\u2028Ngata", "U+2028"),
     ("Ana\u2029Ngata", "U+2029"), ("Ana\x7f", "U+007F"), ("Zoë\x85\u00a0N", "U+0085")],
)  # fmt: skip
def test_control_characters_in_a_name_are_refused_and_named(name: str, found: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(f"control characters (found {found})")):
        Preferences(name=name).validated()


def test_unusual_but_harmless_characters_are_kept() -> None:
    # A no-break space, a zero-width joiner, a soft hyphen: not printable, not control.
    name = "Zoë\u00a0Ngata-O\u00adNeil \u200d日本"
    assert Preferences(name=name).validated().name == name
