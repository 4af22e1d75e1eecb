"""Stopping the app while Whisper still loads: the lifespan waits for the load and the process exits with 0."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app import build_app
from backends.registry import BackendContext
from config import parse_config

ROOT = Path(__file__).resolve().parents[1]

# A scripted model, so start-up loads no chat model and the Whisper load is the slow part.
CONFIG_TOML = """
[[backends]]
name = "script"
kind = "scripted"

[[backends.models]]
name = "echo"
"""

# Generous bounds for a loaded 2-core machine; a healthy start and stop take a few seconds.
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_until_serving(process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"app.py exited with {process.returncode} before it served {url}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"app.py did not serve {url} within {START_TIMEOUT_S} s")


# Exit status after a clean shutdown by signal. uvicorn (0.55) raises a
# received SIGTERM again after the shutdown, so the parent sees the process
# end by that signal, while uvicorn.run turns SIGINT into a return.
EXPECTED_STATUS = {signal.SIGINT: 0, signal.SIGTERM: -signal.SIGTERM}


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGINT, signal.SIGINT, signal.SIGTERM])
def test_app_process_stopped_at_once_exits_cleanly(tmp_path: Path, stop_signal: signal.Signals) -> None:
    config = tmp_path / "parley.toml"
    config.write_text(CONFIG_TOML, encoding="utf-8")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port), "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    try:
        wait_until_serving(process, f"http://127.0.0.1:{port}/healthz")
        # At once: the Whisper load started with the lifespan and is still running.
        process.send_signal(stop_signal)
        _, stderr = process.communicate(timeout=STOP_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    log = stderr.decode(errors="replace")
    assert "terminate called" not in log
    assert "Application shutdown complete" in log
    assert process.returncode == EXPECTED_STATUS[stop_signal], log[-2000:]


async def test_lifespan_shutdown_waits_for_whisper_load(tmp_path: Path) -> None:
    # cpu_threads = 1 gives this app a model spec of its own, so no other test has loaded it yet.
    raw = {
        "backends": [{"name": "script", "kind": "scripted", "models": [{"name": "echo"}]}],
        "audio": {"cpu_threads": 1, "cache_dir": str(tmp_path / "speech-cache")},
    }
    app = build_app(parse_config(raw, source="test config", env={}), context=BackendContext(env={}), ui=False)
    model = app.state.parley_transcriber.model
    assert model.state == "idle"

    async with app.router.lifespan_context(app):
        assert model.state == "loading"

    assert model.state == "ready"
