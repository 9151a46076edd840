"""The README stays true: every `digestd …` command it shows exists in the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from digestd.cli.main import app

README = Path(__file__).resolve().parents[2] / "README.md"


def _command_tree() -> dict:
    group = typer.main.get_command(app)

    def walk(cmd) -> dict:
        return {name: walk(sub) for name, sub in getattr(cmd, "commands", {}).items()}

    return walk(group)


def _shown_commands() -> set[tuple[str, ...]]:
    text = README.read_text(encoding="utf-8")
    shown: set[tuple[str, ...]] = set()
    for match in re.finditer(r"(?:^|`|\$ |exec digestd )digestd((?: [a-z][a-z-]*)+)", text, re.M):
        shown.add(tuple(match.group(1).split()))
    return shown


def test_readme_shows_commands() -> None:
    assert len(_shown_commands()) > 15


@pytest.mark.parametrize("words", sorted(_shown_commands()), ids=" ".join)
def test_every_command_in_the_readme_exists(words: tuple[str, ...]) -> None:
    tree = _command_tree()
    node = tree
    used = []
    for word in words:
        if word not in node:
            break  # an argument (EMAIL, FILE) or prose follows the command path
        used.append(word)
        node = node[word]
    assert used, f"README shows `digestd {' '.join(words)}`, which is no command"
    # A group named alone is fine (it prints its help); a group followed by a word that
    # is not one of its commands is a README that lies.
    if node and len(used) < len(words):
        raise AssertionError(
            f"README shows `digestd {' '.join(words)}`: "
            f"`{words[len(used)]}` is not a command of `digestd {' '.join(used)}`"
        )
