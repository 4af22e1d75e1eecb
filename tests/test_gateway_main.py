"""`python app.py` as a user starts it: arguments, the start-up log line, the served API, no secret logged."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway_setup import closed_port

ROOT = Path(__file__).resolve().parents[1]
KEY = "main-test-key-4242424242"

CONFIG = """
[server]
port = 1

[[backends]]
name = "script"
kind = "scripted"
[[backends.models]]
name = "echo"
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    config = tmp_path / "parley.toml"
    config.write_text(CONFIG, encoding="utf-8")
    log = tmp_path / "parley.log"
    port = closed_port()
    env = {**os.environ, "PARLEY_API_KEYS": KEY, "PARLEY_CONFIG": "/nonexistent/ignored.toml"}

    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "app.py", "--config", str(config), "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_until_serving(url, process)
            yield url, log
        finally:
            process.terminate()
            process.wait(timeout=30)


def _wait_until_serving(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with status {process.returncode} before serving")
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise TimeoutError("app.py did not serve /healthz within 120 s")


def test_app_serves_with_arguments_over_config(server: tuple[str, Path]) -> None:
    url, log = server
    headers = {"Authorization": f"Bearer {KEY}"}

    models = httpx.get(f"{url}/v1/models", headers=headers, timeout=10)
    unauthorized = httpx.get(f"{url}/v1/models", timeout=10)
    page = httpx.get(f"{url}/", timeout=30)
    wrong_method = httpx.get(f"{url}/v1/chat/completions", headers=headers, timeout=10)
    unknown = httpx.post(f"{url}/v1/embeddings", headers=headers, timeout=10)

    assert models.status_code == 200
    assert [model["id"] for model in models.json()["data"]] == ["echo"]
    assert unauthorized.status_code == 401
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert wrong_method.status_code == 405
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
    text = log.read_text(encoding="utf-8")
    assert f"Parley serving on {url} with models echo" in text
    assert KEY not in text
