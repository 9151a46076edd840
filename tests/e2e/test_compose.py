"""docker-compose.yml is valid and runs commands that exist (no Docker engine needed)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import typer.main
import yaml

from digestd.cli.main import app as cli_app
from digestd.core.config import load_settings
from tests.conftest import skip_or_fail
from tests.support.cli import run_cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The file as `docker-compose config` resolves it (defaults filled in, no .env)."""
    binary = shutil.which("docker-compose")
    if binary is None:
        skip_or_fail("docker-compose is not installed (apt-get install docker-compose)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIGESTD_", "POSTGRES_"))}
    # --project-directory elsewhere: a developer's own .env must not change what is checked.
    project = tmp_path_factory.mktemp("compose-project")
    result = subprocess.run(  # the file is read from the repo; relative paths from `project`
        [binary, "-f", str(ROOT / "docker-compose.yml"), "--project-directory", str(project),
         "config"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    resolved["_project"] = project
    return resolved


def _digestd_commands(compose: dict) -> list[list[str]]:
    command = compose["services"]["digestd"]["command"]
    script = command[-1] if command[:2] == ["sh", "-c"] else shlex.join(command)
    paths = []
    for part in re.split(r"&&|;", script):
        words = [w for w in shlex.split(part) if w != "exec"]
        assert words and words[0] == "digestd", f"unexpected step {part!r}"
        paths.append([w for w in words[1:] if not w.startswith("-")])
    return paths


def _command_exists(path: list[str]) -> bool:
    node = typer.main.get_command(cli_app)
    for name in path:
        children = getattr(node, "commands", None)  # a group (typer ships its own click)
        if children is None or name not in children:
            return False
        node = children[name]
    return True


def _targets(ports: list) -> set[int]:
    """Container ports, from short ("8080:8025") or long ({target: 8025}) syntax."""
    return {
        int(p["target"]) if isinstance(p, dict) else int(str(p).rsplit(":", 1)[1]) for p in ports
    }


def test_services_and_wiring(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"db", "mail", "digestd"}
    assert services["db"]["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
    assert "mailpit" in services["mail"]["image"]
    assert _targets(services["mail"]["ports"]) == {8025}  # Mailpit UI
    digestd = services["digestd"]
    # built from the directory holding docker-compose.yml, where the Dockerfile is
    assert Path(digestd["build"]["context"]) == compose["_project"]
    assert (ROOT / "Dockerfile").is_file() and "dockerfile" not in digestd["build"]
    assert digestd["depends_on"]["db"]["condition"] == "service_healthy"
    # the environment compose hands to digestd is one that digestd accepts
    settings = load_settings(digestd["environment"], env_file=None)
    assert settings.database_url == "postgresql+psycopg://digestd:digestd@db:5432/digestd"
    assert (settings.smtp_host, settings.smtp_port) == ("mail", 1025)
    assert settings.listen == "0.0.0.0:8025"
    assert _targets(digestd["ports"]) == {8025}


def test_dockerfile_copies_what_exists_and_runs_the_same_commands(compose: dict) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    ignored = (ROOT / ".dockerignore").read_text().split()
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
                assert source not in ignored, f"{source} is excluded by .dockerignore"
    cmd = re.search(r'^CMD \["sh", "-c", "(.*)"\]$', dockerfile, re.M)
    assert cmd and cmd.group(1) == compose["services"]["digestd"]["command"][-1]


def test_db_upgrade_command_exists(compose: dict) -> None:
    assert ["db", "upgrade"] in _digestd_commands(compose)
    assert _command_exists(["db", "upgrade"])
    result = run_cli("db", "upgrade", "--help", env={})
    assert result.returncode == 0 and "Apply every pending migration" in result.stdout


def test_run_command_exists(compose: dict) -> None:
    assert ["run"] in _digestd_commands(compose)
    if not _command_exists(["run"]):
        # `digestd run` is registered by the daemon part; until it lands this is expected.
        pytest.xfail("digestd run is not registered yet")
    assert _command_exists(["run"])
    for path in _digestd_commands(compose):
        assert _command_exists(path), path
