"""Where the shipped data folders are: inside an installed wheel, or the source checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent  # digestd/, above core/


def data_dir(name: str) -> Path:
    """The folder `templates`, `migrations` or `seeds`, wherever this install keeps it."""
    bundled = _PACKAGE / "_data" / name
    if bundled.is_dir():
        return bundled
    return _PACKAGE.parent / name
