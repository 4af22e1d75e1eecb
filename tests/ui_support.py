"""Serve the whole Parley app (API and UI) from a config dict, for UI tests and the UI benchmark.

`serve_parley(raw_config)` builds the app with `app.build_app()` and runs it
with uvicorn on 127.0.0.1 on a free port in a background thread, so sync
clients (gradio_client, Playwright) can talk to it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import uvicorn

from app import build_app
from backends.registry import BackendContext
from config import parse_config
from multimodal.transcribe import LOAD_WAIT_SECONDS


def scripted_config(model: str = "scripted-echo", *, ui: Mapping[str, Any] | None = None, **backend: Any) -> dict[str, Any]:
    """A config dict with one scripted backend serving `model`; `backend` adds scripted settings."""
    table: dict[str, Any] = {"name": "scripted", "kind": "scripted", "models": [{"name": model}], **backend}
    raw: dict[str, Any] = {"backends": [table]}
    if ui:
        raw["ui"] = dict(ui)
    return raw


@contextmanager
def serve_parley(raw_config: Mapping[str, Any], *, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """Run the app built from `raw_config` until the block exits; yields its base URL."""
    config = parse_config(dict(raw_config), source="test config", env=dict(env or {}))
    app = build_app(config, context=BackendContext(env=dict(env or {})))

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=3))

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(sockets=[sock]),), daemon=True)
    thread.start()
    try:
        for _ in range(1000):
            if server.started or not thread.is_alive():
                break
            threading.Event().wait(0.01)
        if not server.started:
            raise RuntimeError("uvicorn did not start within 10 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        # The lifespan's shutdown waits for a Whisper load still in progress.
        thread.join(timeout=10 + LOAD_WAIT_SECONDS)
        # Gradio's queue leaves background tasks on the loop; cancel them before closing it.
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending and not loop.is_running():
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()
        sock.close()
