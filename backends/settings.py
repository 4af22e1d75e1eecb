"""Config sections shared by every backend kind.

Each backend module defines `Settings`, a subclass of `BackendSettings`
with the fields of its kind; the config loader validates a `[[backends]]`
table against the `Settings` of the kind it names.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from backends.types import Capabilities, ModelInfo


class StrictModel(BaseModel):
    """A config section that rejects unknown keys, so a typo stops start-up."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(StrictModel):
    """Timeouts in seconds; keep-alive comments do not count as progress."""

    connect: float = Field(default=10.0, gt=0)
    first_token: float = Field(default=60.0, gt=0)
    chunk_gap: float = Field(default=60.0, gt=0)
    total: float = Field(default=600.0, gt=0)


class ModelSettings(StrictModel):
    """One model a backend serves, under the public name users pick."""

    name: str = Field(min_length=1)
    upstream: str | None = Field(default=None, description="Model id sent upstream; defaults to name.")
    vision: bool = False
    reasoning: bool = False
    max_context: int = Field(default=8192, gt=0)
    ignored_params: list[str] = Field(default_factory=list)
    fallback: list[str] = Field(default_factory=list, description="Models to try, in order, when this one fails.")
    # 1568 px is the longest side Anthropic's vision models take without resizing; OpenAI's
    # high-detail mode scales the short side to 768 px, so a larger default only costs upload time.
    max_image_side: int = Field(default=1568, gt=0, description="Long side in pixels an image is downscaled to.")
    max_image_bytes: int = Field(default=5 * 1024 * 1024, gt=0, description="Bytes per image after preparation.")

    @property
    def upstream_id(self) -> str:
        return self.upstream or self.name

    def info(self, backend: str) -> ModelInfo:
        """Describe this model, served by `backend`, for model lists and capability checks."""
        return ModelInfo(
            name=self.name,
            backend=backend,
            upstream=self.upstream_id,
            capabilities=Capabilities(
                vision=self.vision,
                reasoning=self.reasoning,
                max_context=self.max_context,
                ignored_params=frozenset(self.ignored_params),
            ),
        )


class BackendSettings(StrictModel):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: str
    models: list[ModelSettings] = Field(default_factory=list)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    # Self-hosted servers are worth retrying after a first-token timeout;
    # paid APIs are better served by falling back at once.
    retry_first_token_timeout: bool = True
