"""`digestd subscribers update EMAIL --import-library FILE`: a reader's library (BibTeX, RIS,
CSL-JSON, or one arXiv id or DOI per line) as liked papers, and its frequent authors."""

from __future__ import annotations

import shlex
from pathlib import Path

from rich.markup import escape

from digestd.cli.common import console, fail
from digestd.core.context import AppContext
from digestd.subscribers import library
from digestd.subscribers.library_file import MAX_BYTES
from digestd.subscribers.manage import ByEmail
from digestd.subscribers.preferences import InvalidInput

SHOWN_NOT_FOUND = 10


def read_file(path: Path) -> bytes:
    """The file's bytes, at most one byte over the cap (the parser refuses it): one line and
    exit 1 when it cannot be read."""
    try:
        with path.open("rb") as handle:
            return handle.read(MAX_BYTES + 1)
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")


def import_library(ctx: AppContext, email: str, path: Path) -> None:
    """Import the file as the subscriber's library and say what it did, offering its most
    frequent authors to follow."""
    data = read_file(path)
    try:
        done = library.import_library(ctx, ByEmail(email), data)
    except InvalidInput as exc:
        fail(f"{path}: {exc}")
    line = done.summary.replace("your library", f"{done.email}'s library")
    extra = f" ({done.format}, {done.in_database} already in the database"
    extra += f", replacing {done.replaced})" if done.replaced else ")"
    console.print(f"imported {escape(line)}{escape(extra)}", highlight=False, soft_wrap=True)
    if done.not_found:
        shown = ", ".join(done.not_found[:SHOWN_NOT_FOUND])
        more = len(done.not_found) - SHOWN_NOT_FOUND
        tail = f" and {more} more" if more > 0 else ""
        console.print(f"not found: {escape(shown)}{tail}", highlight=False, soft_wrap=True)
    if done.offered_authors:
        names = "; ".join(done.offered_authors)
        console.print(
            f"frequent authors in the library: {escape(names)}", highlight=False, soft_wrap=True
        )
        # --authors sets the whole list: the ones followed already stay in it.
        wanted = "; ".join([*done.follows, *done.offered_authors])
        command = (
            f"digestd subscribers update {shlex.quote(done.email)} --authors {shlex.quote(wanted)}"
        )
        console.print(f"to follow them: {escape(command)}", highlight=False, soft_wrap=True)
