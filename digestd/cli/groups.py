"""Command groups whose `--help` shows what each option really takes (issue 27).

Typer prints a type placeholder for every option, `<bool>` for flags too, as if a flag took
a value. Every group of the CLI is a `Group`: before a command's help (or parsing) its
options are given the placeholder they deserve: none for a flag, `<int>` for a number,
`<float>` for a fraction; options that carry a `metavar` (EMAIL, DATE, MINUTES) keep it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from typer.core import TyperGroup, TyperOption

PLACEHOLDERS = {int: "<int>", float: "<float>"}


def real_types(params: Iterable[Any]) -> None:
    """Set each option's placeholder from what it takes (in place; idempotent)."""
    for param in params:
        if not isinstance(param, TyperOption) or param.metavar is not None:
            continue
        if param.is_flag:
            param.metavar = ""
        else:
            shown = PLACEHOLDERS.get(param.type_descriptor.annotation)
            if shown is not None:
                param.metavar = shown


class Group(TyperGroup):
    """A TyperGroup whose commands (and itself) show real option types in `--help`."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        real_types(params)
        return params

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None and not isinstance(command, Group):
            real_types(command.get_params(ctx))
        return command
