"""Backend kinds, looked up by the `kind` key of a `[[backends]]` table.

Each kind is a module that exposes `Settings` (a `BackendSettings`
subclass) and `create(settings, context) -> Backend`. Modules are imported
only when their kind is used, so the local model's libraries load only when
a local backend is configured.
"""

from __future__ import annotations

import importlib
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Protocol, cast

import httpx

from backends.base import Backend
from backends.errors import ConfigError
from backends.settings import BackendSettings

KIND_MODULES: dict[str, str] = {
    "openai": "backends.openai_compat",
    "llama_cpp": "backends.llama_cpp",
    "websocket": "backends.websocket",
    "scripted": "backends.scripted",
}


@dataclass(frozen=True)
class BackendContext:
    """What the composition root gives every backend it creates.

    `http_transport` lets tests and benchmarks route HTTP backends through a
    transport of their choice; `executor` is the bounded pool for CPU-bound
    work such as local generation.
    """

    executor: Executor | None = None
    http_transport: httpx.AsyncBaseTransport | None = None
    # Process environment for secrets; kept out of repr so a logged context shows no key.
    env: dict[str, str] = field(default_factory=dict, repr=False)
    # Values of every secret the config names, masked in upstream error text (see backends.redaction).
    secrets: frozenset[str] = field(default_factory=frozenset, repr=False)
    # The config file the backends come from, for start-up messages.
    config_source: str = "the config"


class _KindModule(Protocol):
    Settings: type[BackendSettings]

    def create(self, settings: BackendSettings, context: BackendContext) -> Backend: ...


def _load(kind: str) -> _KindModule:
    module_name = KIND_MODULES.get(kind)
    if module_name is None:
        known = ", ".join(sorted(KIND_MODULES))
        raise ConfigError(f"unknown backend kind {kind!r}", fix=f"Use one of: {known}.")
    return cast(_KindModule, importlib.import_module(module_name))


def settings_class(kind: str) -> type[BackendSettings]:
    """Return the settings model of a backend kind; raises ConfigError for an unknown kind."""
    return _load(kind).Settings


def create_backend(settings: BackendSettings, context: BackendContext) -> Backend:
    return _load(settings.kind).create(settings, context)
