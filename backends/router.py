"""The one entry point every caller uses to reach a model by its public name."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

from backends.base import Backend
from backends.errors import NotFoundError
from backends.layers.metrics import Metrics
from backends.types import ChatRequest, Event, Health, ModelInfo


class Router:
    """Maps public model names to the backend stack that serves each one.

    `routes` maps a model name to the outermost layer for that model (cache,
    fallback, ...); `backends` are the bare backends by configured name, kept
    for health checks and for closing. `metrics` are the layers' metrics for
    GET /metrics; `closers` release what the layers share (a Redis client)
    after the backends are closed.
    """

    def __init__(
        self,
        backends: Mapping[str, Backend],
        routes: Mapping[str, Backend],
        infos: Mapping[str, ModelInfo],
        *,
        metrics: Metrics | None = None,
        closers: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        self.backends = dict(backends)
        self._routes = dict(routes)
        self._infos = dict(infos)
        self.metrics = metrics
        self._closers = list(closers)

    def models(self) -> list[ModelInfo]:
        return list(self._infos.values())

    def info(self, model: str) -> ModelInfo:
        """Return a model's info; raises NotFoundError naming the models there are."""
        found = self._infos.get(model)
        if found is None:
            known = ", ".join(sorted(self._infos)) or "none"
            raise NotFoundError(
                f"model {model!r} is not configured",
                fix=f"Pick one of the configured models: {known}.",
                models=known,
            )
        return found

    def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        self.info(request.model)
        return self._routes[request.model].stream(request)

    async def health(self) -> list[Health]:
        return list(await asyncio.gather(*(backend.health() for backend in self.backends.values())))

    async def aclose(self) -> None:
        for backend in self.backends.values():
            await backend.aclose()
        for close in self._closers:
            await close()
