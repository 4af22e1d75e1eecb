"""The base of the layers that wrap one inner backend, and stream helpers they share."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

from backends.base import Backend
from backends.types import Event, Health, ModelInfo


class Layer(Backend):
    """A backend that wraps one inner backend and passes models, health and closing through to it."""

    def __init__(self, inner: Backend) -> None:
        self.name = inner.name
        self._inner = inner

    def models(self) -> list[ModelInfo]:
        return self._inner.models()

    async def health(self) -> Health:
        return await self._inner.health()

    async def aclose(self) -> None:
        await self._inner.aclose()


async def close_stream(stream: AsyncIterator[Event]) -> None:
    """Close an inner stream so it releases its upstream request, as the Backend contract requires."""
    if isinstance(stream, AsyncGenerator):
        await stream.aclose()
