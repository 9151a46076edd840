"""`digestd web` as an admin runs it: a real process serving on DIGESTD_LISTEN until stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from tests.support.cli import run_cli
from tests.support.smtp import free_port

REPO = Path(__file__).resolve().parents[2]


def env_for(tmp_path: Path, port: int) -> dict[str, str]:
    return {
        "DIGESTD_DATABASE_URL": f"sqlite:///{tmp_path / 'web.db'}",
        "DIGESTD_LISTEN": f"127.0.0.1:{port}",
        "DIGESTD_BASE_URL": f"http://127.0.0.1:{port}",
        "DIGESTD_SECRET_KEY": "cli-web-secret-0123456789",
    }


def test_digestd_web_serves_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGESTD_")}
    env.update(env_for(tmp_path, port))
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen(
        [sys.executable, "-m", "digestd", "web"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # One client for every try (a client a try loaded the CA bundle each time, 45 ms of the
    # CPU the starting process needs).
    client = httpx.Client(timeout=5, trust_env=False)
    try:
        health = None
        pause = threading.Event()
        for _ in range(300):  # bounded: up to ~30 s for the interpreter and migrations
            if proc.poll() is not None:
                break
            try:
                health = client.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                pause.wait(0.1)
        assert health is not None, proc.stderr.read() if proc.stderr else ""
        assert health.status_code == 200
        assert health.json()["database"] == "ok"
        page = client.get(f"http://127.0.0.1:{port}/")
        assert page.status_code == 200 and "Subscribe" in page.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    out = proc.stdout.read() if proc.stdout else ""
    assert f"listening on http://127.0.0.1:{port}" in out


def test_digestd_web_says_in_one_line_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_cli("web", env=env_for(tmp_path, port), cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0]
    assert "listening" not in result.stdout  # never announced: the port was checked first


def test_digestd_run_checks_the_web_port_before_it_says_it_runs(sqlite_url: str) -> None:
    from tests.support.daemon import DaemonProcess, daemon_env

    url = sqlite_url
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        daemon = DaemonProcess(daemon_env(url, 9, DIGESTD_LISTEN=f"127.0.0.1:{port}"))
        try:
            assert daemon.wait(timeout=60) == 1
        finally:
            daemon.stop()
    assert f"cannot listen on 127.0.0.1:{port}" in daemon.output
    assert "digestd running" not in daemon.output and "Traceback" not in daemon.output
