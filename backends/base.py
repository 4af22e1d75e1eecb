"""The backend contract: every model source and every resilience layer is one."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from typing import TypeVar

from backends.errors import ImageNotSupportedError, NotFoundError
from backends.settings import ModelSettings
from backends.types import ChatRequest, Event, Health, ModelInfo

ModelSettingsT = TypeVar("ModelSettingsT", bound=ModelSettings)


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


def find_model(models: Mapping[str, ModelSettingsT], request: ChatRequest, backend: str) -> ModelSettingsT:
    """Return the settings of the model that `request` names, checked against the request.

    Raises NotFoundError, listing the backend's models, for an unknown name,
    and ImageNotSupportedError for an image sent to a model without vision.
    """
    model = models.get(request.model)
    if model is None:
        raise NotFoundError(
            f"model {request.model!r} is not served by this backend",
            backend=backend,
            fix=f"Pick one of: {', '.join(models)}.",
        )
    if not model.vision and any(message.images for message in request.messages):
        raise ImageNotSupportedError("the model cannot see images", backend=backend, model=model.name)
    return model
