"""The CLI's table layout at 80 columns (digestd/cli/tables.py, issue 27): a word wider than
the wrapping column makes room by leaving a column out, or goes under its row; never past
the edge, never cut."""

from __future__ import annotations

from digestd.cli.tables import Column, layout

PATH = "sqlite:////var/lib/digestd/instances/reading-group-of-the-lab/digestd.db"
ADDRESS = "maximiliane.papadopoulou@computational-linguistics.example.org"


def test_a_value_with_a_word_wider_than_its_column_goes_under_its_row() -> None:
    columns = [Column("variable", keep=True), Column("value", keep=True, wrap=True)]
    rows = [
        ["DIGESTD_DATABASE_URL", PATH],
        ["DIGESTD_SMTP_HOST_FOR_THE_RELAY_OF_THE_LAB_PLEASE", "127.0.0.1"],
    ]
    lines, left_out = layout(columns, rows, total=80)
    assert left_out == [] and max(len(line) for line in lines) <= 80
    at = lines.index("DIGESTD_DATABASE_URL")
    assert lines[at + 1] == "    " + PATH  # whole, indented under its variable
    assert lines[at + 2].split() == [
        "DIGESTD_SMTP_HOST_FOR_THE_RELAY_OF_THE_LAB_PLEASE",
        "127.0.0.1",
    ]


def test_a_long_word_leaves_a_column_out_before_going_under() -> None:
    columns = [
        Column("id", keep=True, right=True),
        Column("kind", keep=True),
        Column("received", priority=1),
        Column("summary", keep=True, wrap=True),
    ]
    rows = [["7", "bounce", "2026-12-06 20:42", f"failed {ADDRESS}: 5.1.1 (hard)"]]
    lines, left_out = layout(columns, rows, total=80)
    assert left_out == ["received"] and max(len(line) for line in lines) <= 80
    assert lines[1].split()[:3] == ["7", "bounce", "failed"]
    assert ADDRESS + ":" in lines[2].split()
