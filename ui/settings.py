"""The `[ui]` config section: queue, upload and streaming limits of the browser UI."""

from __future__ import annotations

from pydantic import Field

from backends.settings import StrictModel


class UISettings(StrictModel):
    """How the browser UI queues, streams and accepts uploads."""

    concurrency_limit: int | None = Field(
        default=64,
        gt=0,
        description="Chat events streaming at once across all users; unset means no limit.",
    )
    queue_max_size: int = Field(default=512, gt=0, description="Events waiting in the queue before new ones are rejected.")
    max_file_size_mb: float = Field(default=20.0, gt=0, description="Largest upload in megabytes; a larger one gets HTTP 413.")
    stream_interval_ms: int = Field(
        default=60,
        ge=0,
        description="Least milliseconds between two streamed updates of one reply; later tokens are batched.",
    )
    max_updates_per_second: float = Field(
        default=200.0,
        gt=0,
        description=(
            "Maximum streamed updates per second across all chat replies together. "
            "With more replies at once, each one updates less often than stream_interval_ms."
        ),
    )
    heartbeat_s: float = Field(
        default=1.0,
        gt=0,
        description="Seconds between updates while a reply waits for tokens, so a closed tab is noticed.",
    )
    default_model: str | None = Field(default=None, description="Model picked when the page opens; default: the first.")
    default_temperature: float = Field(default=0.7, ge=0, le=2)
    default_top_p: float = Field(default=1.0, gt=0, le=1)
    default_max_tokens: int = Field(default=1024, gt=0)
    max_tokens_limit: int = Field(default=32768, gt=0, description="Upper end of the max tokens slider.")
    chat_height: int = Field(default=560, gt=100, description="Height of the conversation in pixels.")
