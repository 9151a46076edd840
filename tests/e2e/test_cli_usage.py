"""The command line as a whole: usage mistakes are one line and exit 2 (README "Exit
codes"); a database that is down is exit 75; JSON is ISO-dated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import run_cli


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["nosuch"], "No such command 'nosuch'"),
        (["subscribers", "add"], "Missing argument 'EMAIL'"),
        (["deliveries", "list", "--limit", "-1"], "Invalid value for '--limit'"),
        (["subscribers", "list", "--nope"], "No such option"),
    ],
)
def test_usage_mistakes_are_one_line_and_exit_2(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    result = run_cli(
        *args, env={"DIGESTD_DATABASE_URL": f"sqlite:///{tmp_path}/d.db"}, cwd=tmp_path
    )
    assert result.returncode == 2, result
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "--help" in lines[0]
    assert "Traceback" not in result.stderr


def test_a_group_alone_shows_its_help(tmp_path: Path) -> None:
    result = run_cli("subscribers", env={}, cwd=tmp_path)
    assert result.returncode == 0
    assert "import" in result.stdout and "export" in result.stdout


def test_mistyped_database_directory_is_refused_and_nothing_is_created(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "digestd.db"
    result = run_cli(
        "subscribers", "list", env={"DIGESTD_DATABASE_URL": f"sqlite:///{missing}"}, cwd=tmp_path
    )
    assert result.returncode == 1
    assert f"directory {missing.parent} does not exist" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not missing.parent.exists()


def test_an_unreachable_database_is_one_line_without_its_password(tmp_path: Path) -> None:
    # Nothing listens on port 1: the connection is refused at once. Temporary: exit 75.
    url = "postgresql+psycopg://bot:hunter2-secret@127.0.0.1:1/digest?connect_timeout=2"
    result = run_cli("subscribers", "list", env={"DIGESTD_DATABASE_URL": url}, cwd=tmp_path)
    assert result.returncode == 75
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert "database postgresql+psycopg://bot:***@127.0.0.1:1/digest" in lines[0]
    assert "hunter2" not in result.stderr + result.stdout


def test_json_timestamps_are_iso_8601(tmp_path: Path) -> None:
    from tests.support.smtp import free_port

    env = {
        "DIGESTD_DATABASE_URL": f"sqlite:///{tmp_path}/d.db",
        "DIGESTD_SMTP_PORT": str(free_port()),  # nobody listens: the delivery waits in retry
    }
    seeds = Path(__file__).resolve().parents[2] / "seeds" / "trending-papers.json"
    for args in (
        ["subscribers", "add", "iso@example.org", "--confirmed"],
        ["sources", "add", str(seeds)],
        ["sources", "fetch"],
        ["send-now", "--all"],
    ):
        # send-now: the relay is down, so 75 (temporary), and the delivery waits.
        expected = 75 if args[0] == "send-now" else 0
        assert run_cli(*args, env=env, cwd=tmp_path).returncode == expected, args
    rows = json.loads(run_cli("deliveries", "list", "--json", env=env, cwd=tmp_path).stdout)
    assert rows, "send-now planned a delivery"
    stamps = [v for row in rows for k, v in row.items() if k.endswith("_at") and v]
    assert stamps
    for value in stamps:
        assert "T" in value and value.endswith("+00:00"), value


def test_config_show_masks_every_secret(tmp_path: Path) -> None:
    env = {
        "DIGESTD_DATABASE_URL": "postgresql://digestd:db-pass-42@db.example.org:5432/digestd",
        "DIGESTD_SMTP_USERNAME": "mailer",
        "DIGESTD_SMTP_PASSWORD": "smtp-pass-42",
        "DIGESTD_SECRET_KEY": "secret-key-42-0123456789",
        "DIGESTD_SMTP_PORT": "2525",
    }
    result = run_cli("config", "show", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["smtp_port"] == 2525
    assert shown["smtp_username"] == "mailer"
    assert "db.example.org" in shown["database_url"]
    assert "42" not in result.stdout.replace("2525", "")
    bad = run_cli("config", "show", env={"DIGESTD_SMTP_TLS": "ssl"}, cwd=tmp_path)
    assert bad.returncode == 1
    assert (
        bad.stderr.strip()
        == "error: DIGESTD_SMTP_TLS must be one of none, starttls, tls, got 'ssl'"
    )
