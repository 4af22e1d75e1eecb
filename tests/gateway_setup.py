"""Configs and a served app for the gateway tests: scripted models and the fake OpenAI server."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from app import build_app
from backends.registry import BackendContext
from backends.scripted import ScriptedBackend
from config import AppConfig, parse_config
from tests.serve_app import serve_app

# Replies picked by the start of the user's message; anything else is echoed.
SCRIPTED_BACKEND: dict[str, Any] = {
    "name": "script",
    "kind": "scripted",
    "models": [{"name": "echo"}, {"name": "seer", "vision": True}, {"name": "thinker", "reasoning": True}],
    "replies": [
        {"match": "^think", "reasoning": "Two and two.", "text": "It is 4."},
        {"match": "^fail early", "error": "rate_limited", "retry_after": 2},
        {"match": "^fail late", "text": "one two three four", "error": "overloaded", "error_after_chunks": 2},
        {"match": "^count", "text": "one two three four five six"},
    ],
}

# The first chunk at once, then one every 30 s, for disconnects in the middle of a stream.
SLOW_BACKEND: dict[str, Any] = {
    "name": "slow",
    "kind": "scripted",
    "chunk_delay": 30,
    "models": [{"name": "slow"}],
    "replies": [{"text": "tick " * 200}],
}


def closed_port() -> int:
    """Return a port on 127.0.0.1 that nothing listens on, so connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def openai_backend(name: str, base_url: str, *models: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "openai", "base_url": base_url, "models": [{"name": model} for model in models], **extra}


# Layers off, so each test gets the backend's own reply or error: no cache
# hits, no retries and no canned reply in place of an error.
BARE_RESILIENCE: dict[str, Any] = {
    "cache": {"enabled": False},
    "retry": {"max_retries": 0},
    "fallback": {"canned_reply": False},
}


def gateway_config(
    *backends: Mapping[str, Any], resilience: Mapping[str, Any] = BARE_RESILIENCE, **server: Any
) -> AppConfig:
    raw: dict[str, Any] = {"backends": [dict(table) for table in backends], "resilience": dict(resilience)}
    if server:
        raw["server"] = server
    return parse_config(raw, source="test config", env={})


@dataclass
class Gateway:
    url: str
    app: FastAPI

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"

    def scripted(self, name: str = "script") -> ScriptedBackend:
        backend = self.app.state.parley_api.router.backends[name]
        assert isinstance(backend, ScriptedBackend)
        return backend


@asynccontextmanager
async def run_gateway(config: AppConfig, env: Mapping[str, str] | None = None) -> AsyncIterator[Gateway]:
    """Build the app for `config` and serve it on 127.0.0.1 in the test's loop."""
    app = build_app(config, context=BackendContext(env=dict(env or {})), ui=False, preload_models=False)
    async with serve_app(app) as url:
        yield Gateway(url=url, app=app)
