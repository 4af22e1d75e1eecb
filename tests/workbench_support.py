"""Routers over real backends for the workbench tests."""

from __future__ import annotations

from typing import Any

from backends.registry import BackendContext, create_backend, settings_class
from backends.router import Router
from backends.scripted import ScriptedBackend


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
