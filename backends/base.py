"""The backend contract: every model source and every resilience layer is one."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

from backends.types import ChatRequest, Event, Health, ModelInfo


class Backend(ABC):
    """Something that turns a `ChatRequest` into a stream of events.

    Contract for `stream()`:
    - it is an async generator; the caller may stop iterating at any time
      (Stop button, closed tab, disconnected API client) and must then call
      `aclose()` on the generator, which must release the upstream request
      (close the HTTP response, stop local generation) in its `finally`;
    - a successful stream ends with exactly one `Finished` event;
    - failures are raised as `ParleyError` subclasses, never yielded;
    - `request.model` is the public model name; the backend maps it to its
      upstream id through its `models()`.
    """

    name: str

    @abstractmethod
    def models(self) -> list[ModelInfo]:
        """List the models this backend serves."""

    @abstractmethod
    def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        """Stream one reply; see the class docstring for the contract."""

    async def health(self) -> Health:
        """Report whether the backend can be reached; local backends always can."""
        return Health(backend=self.name, reachable=True)

    async def aclose(self) -> None:
        """Release connections, threads and models held by the backend."""
