"""Reading other tools' CSV: header spellings, layouts, and where a file stops being UTF-8."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from digestd.subscribers.csv_io import (
    _header,
    first_bad_utf8,
    spreadsheet_safe,
    undo_spreadsheet_safe,
)


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 7, 1 << 16])
def test_first_bad_byte_is_found_at_its_offset_whatever_the_chunk(
    tmp_path: Path, chunk: int
) -> None:
    good = "email,name\nzoë@example.org,Zoë Ünal 日本\n".encode()
    path = tmp_path / "x.csv"
    path.write_bytes(good + b"ana@example.org,Ana M\xfcller\n")
    assert first_bad_utf8(path, chunk) == (len(good) + len(b"ana@example.org,Ana M"), 0xFC, 3)
    path.write_bytes(good)
    assert first_bad_utf8(path, chunk) is None
    path.write_bytes(good + "日".encode()[:2])  # cut in the middle of a character
    assert first_bad_utf8(path, chunk) == (len(good), 0xE6, 3)


def test_headers_are_matched_loosely_and_layout_columns_are_skipped() -> None:
    header = _header(["E-Mail", "First Name", "last_name", "MAX ITEMS"], ignore_unknown=False)
    assert not isinstance(header, str)
    assert header.fields == {"email": 0, "first_name": 1, "last_name": 2, "max_items": 3}
    # Mailchimp's default merge fields are known only next to Mailchimp's own columns
    mailchimp = _header(["Email Address", "Phone Number", "LEID"], ignore_unknown=False)
    assert not isinstance(mailchimp, str) and mailchimp.skipped == ["Phone Number", "LEID"]
    alone = _header(["email", "Phone Number"], ignore_unknown=False)
    assert isinstance(alone, str) and alone.startswith("unknown column 'Phone Number'")
    assert _header(["name"], ignore_unknown=True) == (
        'no email column (the one required column; "Email Address" and "E-mail" work too)'
    )


@given(st.text(max_size=40))
def test_spreadsheet_neutralizing_is_undone_exactly(value: str) -> None:
    safe = spreadsheet_safe(value)
    assert not safe.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert undo_spreadsheet_safe(safe) == value
    # only what export neutralized is undone: other values are read as they are
    if safe == value:
        assert undo_spreadsheet_safe(value) == value
