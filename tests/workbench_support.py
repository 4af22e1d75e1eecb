"""Routers over real backends for the workbench tests."""

from __future__ import annotations

from typing import Any

from backends.pipeline import build_router
from backends.registry import BackendContext, create_backend, settings_class
from backends.router import Router
from backends.scripted import ScriptedBackend
from config import parse_config


def scripted_router(**backends: dict[str, Any]) -> tuple[Router, dict[str, ScriptedBackend]]:
    """Build a Router over scripted backends, one per keyword: name -> settings table."""
    created: dict[str, ScriptedBackend] = {}
    routes = {}
    infos = {}
    for name, table in backends.items():
        settings = settings_class("scripted").model_validate({"name": name, "kind": "scripted", **table})
        backend = create_backend(settings, BackendContext())
        assert isinstance(backend, ScriptedBackend)
        created[name] = backend
        for info in backend.models():
            routes[info.name] = backend
            infos[info.name] = info
    return Router(created, routes, infos), created


def openai_router(base_url: str, models: tuple[str, ...] = ("fake-model",), **table: Any) -> Router:
    """Build a Router over one openai-kind backend pointed at a server on 127.0.0.1."""
    settings = settings_class("openai").model_validate(
        {"name": "fake", "kind": "openai", "base_url": base_url, "models": [{"name": m} for m in models], **table}
    )
    backend = create_backend(settings, BackendContext())
    infos = {info.name: info for info in backend.models()}
    return Router({"fake": backend}, {name: backend for name in infos}, infos)


def layered_router(**table: Any) -> tuple[Router, ScriptedBackend]:
    """Build a Router with the default fallback layer, canned reply included, over one scripted backend.

    The cache and retries are off, so a failing model reaches the fallback layer at once.
    """
    raw = {
        "backends": [{"name": "scripted", "kind": "scripted", **table}],
        "resilience": {"cache": {"enabled": False}, "retry": {"max_retries": 0}},
    }
    router = build_router(parse_config(raw, source="test config", env={}), BackendContext())
    backend = router.backends["scripted"]
    assert isinstance(backend, ScriptedBackend)
    return router, backend
