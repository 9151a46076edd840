""".env.example documents exactly the settings digestd reads, with values it accepts."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from digestd.core.config import PARSERS, Settings, load_settings

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"
_LINE = re.compile(r"^#?\s*(DIGESTD_[A-Z0-9_]+)=(.*)$")


def _documented() -> dict[str, str]:
    pairs: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = _LINE.match(line.strip())
        if match:
            assert match.group(1) not in pairs, f"{match.group(1)} is listed twice"
            pairs[match.group(1)] = match.group(2)
    return pairs


def test_env_example_lists_exactly_the_settings() -> None:
    documented, known = set(_documented()), set(PARSERS)
    assert documented == known, (
        f"missing {sorted(known - documented)}, unknown {sorted(documented - known)}"
    )


def test_env_example_values_are_accepted_and_match_the_defaults(tmp_path: Path) -> None:
    values = _documented()
    values["DIGESTD_TEMPLATES_DIR"] = str(tmp_path)  # the example path need not exist here
    settings = load_settings(values, env_file=None)  # raises ConfigError on a bad example
    defaults = Settings()
    # The example shows the defaults, except where it shows how to fill in a value.
    shown_differently = {"from_address", "templates_dir"}
    for f in fields(Settings):
        if f.name not in shown_differently:
            assert getattr(settings, f.name) == getattr(defaults, f.name), f.name
