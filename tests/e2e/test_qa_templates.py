"""QA: a broken override template (DIGESTD_TEMPLATES_DIR) is one clear line naming the file,
never a traceback, and a digest that could not be rendered is kept for a retry."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import select

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Delivery
from tests.support.cli import run_cli

BROKEN = {
    "syntax": ("{% for p in papers %}{{ p.title }\n", "line 1", "unexpected '}'"),
    "undefined": ("{{ nosuch.attr }}\n", "email/digest.txt", "'nosuch' is undefined"),
}


def _templates(tmp_path: Path, body: str) -> Path:
    (tmp_path / "tpl" / "email").mkdir(parents=True)
    path = tmp_path / "tpl" / "email" / "digest.txt"
    path.write_text(body, encoding="utf-8")
    return path


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_preview_with_a_broken_template_is_one_line(
    env: dict[str, str], tmp_path: Path, kind: str
) -> None:
    body, where, what = BROKEN[kind]
    path = _templates(tmp_path, body)
    res = run_cli(
        "preview", "kenji@example.org", env={**env, "DIGESTD_TEMPLATES_DIR": str(path.parents[1])}
    )
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: template ") and where in lines[0] and what in lines[0]
    if kind == "syntax":
        assert str(path) in lines[0]


def test_send_now_with_a_broken_template_logs_one_line_and_keeps_the_delivery(
    env: dict[str, str], sqlite_url: str, tmp_path: Path
) -> None:
    path = _templates(tmp_path, BROKEN["syntax"][0])
    res = run_cli(
        "send-now", "kenji@example.org", env={**env, "DIGESTD_TEMPLATES_DIR": str(path.parents[1])}
    )
    assert "Traceback" not in res.stderr, res.stderr
    assert str(path) in res.stderr and "unexpected '}'" in res.stderr
    ctx = AppContext(Settings(database_url=sqlite_url))
    with session_scope(ctx.engine) as s:
        (delivery,) = s.exec(select(Delivery)).all()
        assert delivery.status == "retry" and "unexpected '}'" in (delivery.error or "")
    ctx.dispose()
