"""Progress bars: drawn when a person watches a terminal, absent in a pipe (cron, scripts),
and silenced by --quiet."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.support.daemon import SECRET, seed_due_deliveries
from tests.support.smtp import SmtpTestServer
from tests.support.terminal import run_in_terminal

BAR = "━"  # rich's bar glyph


@pytest.fixture
def env(sqlite_url: str, smtp_server: SmtpTestServer) -> dict[str, str]:
    url = sqlite_url
    seed_due_deliveries(url, 12)
    return {
        "DIGESTD_DATABASE_URL": url,
        "DIGESTD_SECRET_KEY": SECRET,
        "DIGESTD_SMTP_PORT": str(smtp_server.port),
        "DIGESTD_BATCH_SIZE": "4",
    }


def test_send_now_shows_progress_on_a_terminal_only(
    env: dict[str, str], smtp_server: SmtpTestServer
) -> None:
    code, screen = run_in_terminal("send-now", "--all", env=env)
    assert code == 0, screen
    assert "sending" in screen and BAR in screen and "/12" in screen, screen
    assert "sent 12" in screen
    assert len(smtp_server.messages) == 12

    piped = run_cli("deliveries", "retry", "--failed", env=env)
    assert piped.returncode == 0, piped.stderr
    assert "sending" not in piped.stderr and BAR not in piped.stderr + piped.stdout
    assert "\x1b[" not in piped.stderr  # no cursor movement in a pipe


def test_export_import_progress_and_quiet(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "list.csv"
    code, screen = run_in_terminal("subscribers", "export", str(out), env=env)
    assert code == 0, screen
    assert "exporting" in screen and BAR in screen, screen
    assert "exported 12 subscribers" in screen
    assert len(out.read_text().splitlines()) == 13  # the bar never lands in the file

    code, screen = run_in_terminal("subscribers", "export", str(out), "--quiet", env=env)
    assert code == 0, screen
    assert "exporting" not in screen and BAR not in screen, screen
    assert "exported 12 subscribers" in screen

    code, screen = run_in_terminal(
        "subscribers", "import", str(out), "--dry-run", "--update-existing", env=env
    )
    assert code == 0, screen
    assert "importing" in screen and BAR in screen, screen
    assert "dry run, nothing written" in screen

    piped = run_cli("subscribers", "export", env=env)
    assert piped.returncode == 0 and piped.stderr == "", piped.stderr
    assert len(piped.stdout.splitlines()) == 13
