"""Command groups whose `--help` shows what each option really takes (issue 27).

Typer prints a type placeholder for every option, `<bool>` for flags too, as if a flag took
a value, and names arguments by their Python names (`{email}`). Every group of the CLI is
a `Group`: before a command's help (or parsing) its options are given the placeholder they
deserve: none for a flag, `<int>` for a number, `<float>` for a fraction; options that carry
a `metavar` (EMAIL, DATE, MINUTES) keep it; an argument is named in capitals (EMAIL, FILE),
as the README writes it.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from typer.core import TyperArgument, TyperGroup, TyperOption

PLACEHOLDERS = {int: "<int>", float: "<float>"}


def real_types(params: Iterable[Any]) -> None:
    """Set each option's placeholder from what it takes (in place; idempotent)."""
    for param in params:
        if isinstance(param, TyperArgument) and param.metavar is None and param.name:
            param.metavar = param.name.upper()
        if not isinstance(param, TyperOption) or param.metavar is not None:
            continue
        if param.is_flag:
            param.metavar = ""
        else:
            shown = PLACEHOLDERS.get(param.type_descriptor.annotation)
            if shown is not None:
                param.metavar = shown


def one_line_paragraphs(text: str | None) -> str | None:
    """A docstring's paragraphs each on one line, so rich wraps them at the terminal's width
    (Typer keeps a docstring's own line breaks: "…or the one / sent now" in a listing)."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(p.split()) for p in paragraphs)


def tidy_help(command: Any) -> None:
    """Give a command one-line paragraphs in its help (in place; idempotent)."""
    command.help = one_line_paragraphs(command.help)
    if command.short_help:
        command.short_help = one_line_paragraphs(command.short_help)


class Group(TyperGroup):
    """A TyperGroup whose commands (and itself) show real option types in `--help`, and
    their help text wrapped at the terminal's width."""

    def get_params(self, ctx: Any) -> list[Any]:
        tidy_help(self)
        params = super().get_params(ctx)
        real_types(params)
        return params

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            tidy_help(command)
        if command is not None and not isinstance(command, Group):
            real_types(command.get_params(ctx))
        return command
