"""The retry layer: tries a model call again after a retryable failure before its first event."""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence

from pydantic import Field

from backends.base import Backend
from backends.errors import ParleyError, RetryableError, UpstreamTimeoutError
from backends.layers import messages
from backends.layers.clock import Clock
from backends.layers.metrics import Metrics
from backends.layers.layer import HandOff, Layer, Relay, close_stream
from backends.settings import StrictModel
from backends.types import ChatRequest, Event, Finished, Notice

logger = logging.getLogger(__name__)

# Key in ParleyError.params under which the retry layer leaves the labels of every failed attempt.
ATTEMPTS_PARAM = "attempt_labels"


class RetrySettings(StrictModel):
    """The `[resilience.retry]` section."""

    max_retries: int = Field(default=3, ge=0, le=10, description="Retries after the first attempt.")
    backoff_seconds: list[float] = Field(
        default_factory=lambda: [1.0, 2.0, 4.0],
        min_length=1,
        description="Wait before each retry; the last value repeats when there are more retries.",
    )
    jitter: float = Field(
        default=0.1, ge=0, le=1, description="Up to this fraction of the wait is added at random."
    )
    max_retry_after_seconds: float = Field(
        default=60.0,
        ge=0,
        description="Longest Retry-After honoured; a longer one skips to the fallback chain at once.",
    )


def failure_labels(error: ParleyError) -> tuple[str, ...]:
    """Return the short label of every failed attempt behind `error`, oldest first."""
    labels = error.params.get(ATTEMPTS_PARAM)
    if isinstance(labels, tuple) and labels:
        return labels
    return (error.short,)


def describe_failures(model: str, labels: Sequence[str]) -> str:
    """Format failed attempts for a served-by line, such as "deepseek-chat: 503 ×3" or "m: 503, timeout"."""
    runs: list[tuple[str, int]] = []
    for label in labels:
        if runs and runs[-1][0] == label:
            runs[-1] = (label, runs[-1][1] + 1)
        else:
            runs.append((label, 1))
    parts = [label if count == 1 else f"{label} ×{count}" for label, count in runs]
    return f"{model}: {', '.join(parts)}"


class RetryLayer(Layer):
    """Retries on `RetryableError` raised before the inner stream yielded anything but notices.

    Once a text, reasoning or usage event has passed, a failure is raised
    as it is: retrying then would repeat text the caller already has.
    A timeout to the first token is retried only when the backend's
    `retry_first_token_timeout` is set. A Retry-After longer than
    `max_retry_after_seconds` raises at once so the fallback chain can act.
    """

    def __init__(
        self,
        inner: Backend,
        settings: RetrySettings,
        *,
        clock: Clock,
        metrics: Metrics,
        retry_first_token_timeout: bool = True,
        rng: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(inner)
        self._settings = settings
        self._clock = clock
        self._metrics = metrics
        self._retry_first_token_timeout = retry_first_token_timeout
        self._rng = rng

    def _should_retry(self, error: ParleyError) -> bool:
        if not isinstance(error, RetryableError):
            return False
        # Raised before any event, a timeout without an HTTP status (408 and 504 carry one) is a
        # timeout to the first token: the request reached the server, which then stayed silent.
        if isinstance(error, UpstreamTimeoutError) and error.status is None:
            return self._retry_first_token_timeout
        return True

    def _delay(self, retry_index: int, error: ParleyError) -> float | None:
        """Return the wait before retry number `retry_index` (0-based), or None to give up now."""
        if error.retry_after is not None:
            if error.retry_after > self._settings.max_retry_after_seconds:
                return None
            return max(error.retry_after, 0.0)
        steps = self._settings.backoff_seconds
        base = steps[min(retry_index, len(steps) - 1)]
        return base + base * self._settings.jitter * self._rng()

    def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        return Relay(self._attempts(request))

    async def _attempts(self, request: ChatRequest) -> AsyncGenerator[Event | HandOff, None]:
        labels: list[str] = []
        attempts = self._settings.max_retries + 1

        while True:
            started = False
            handed_off = False
            inner = self._inner.stream(request)
            try:
                async for event in inner:
                    if type(event) is Finished:
                        if labels:
                            event = dataclasses.replace(
                                event, failures=(describe_failures(request.model, labels), *event.failures)
                            )
                    elif not started and type(event) is not Notice:
                        started = True
                        if not labels:
                            # No retry after a start and no failures to add to Finished: the rest of the
                            # reply goes straight from the inner stream to the caller.
                            handed_off = True
                            yield HandOff(inner, first=event)
                            return
                    yield event
                return
            except ParleyError as failure:
                if started:
                    raise
                error = failure
                labels.append(error.short)
                error.params[ATTEMPTS_PARAM] = tuple(labels)
                retry_index = len(labels) - 1
                if retry_index >= self._settings.max_retries or not self._should_retry(error):
                    raise
                delay = self._delay(retry_index, error)
                if delay is None:
                    logger.info(
                        "not retrying %s: Retry-After %.0f s is over the %.0f s limit",
                        request.model,
                        error.retry_after,
                        self._settings.max_retry_after_seconds,
                    )
                    raise
            finally:
                if not handed_off:
                    await close_stream(inner)

            # Between attempts: tell the user, count, wait.
            self._metrics.retries.labels(backend=error.backend or self.name, model=request.model, code=error.code).inc()
            logger.info(
                "retrying %s in %.2f s after %s (attempt %d of %d)", request.model, delay, error, len(labels) + 1, attempts
            )
            yield Notice(
                kind="retrying",
                message=messages.text(
                    "retrying",
                    request.language,
                    model=request.model,
                    error=error.short,
                    delay=delay,
                    attempt=len(labels) + 1,
                    attempts=attempts,
                ),
            )
            await self._clock.sleep(delay)
