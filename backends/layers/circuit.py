"""The circuit breaker: stops sending requests to an endpoint that keeps failing.

The balancer consults one breaker per endpoint before it picks one, and
reports the outcome of every request it sent there.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import Literal

from pydantic import Field

from backends.base import Backend
from backends.errors import AuthError, InsufficientBalanceError, ParleyError, RetryableError
from backends.layers.clock import Clock
from backends.layers.errors import CircuitOpenError
from backends.layers.metrics import Metrics
from backends.settings import StrictModel

logger = logging.getLogger(__name__)

CircuitState = Literal["closed", "open", "half_open"]


class CircuitSettings(StrictModel):
    """The `[resilience.circuit]` section."""

    window_seconds: float = Field(default=60.0, gt=0, description="Seconds of calls the failure ratio looks at.")
    min_calls: int = Field(default=4, ge=1, description="Calls in the window before the circuit may open.")
    failure_ratio: float = Field(
        default=0.5, ge=0, lt=1, description="The circuit opens when more than this share of calls failed."
    )
    cooldown_seconds: float = Field(default=30.0, gt=0, description="Seconds an open circuit skips the endpoint.")
    auth_cooldown_seconds: float = Field(
        default=300.0, gt=0, description="Seconds an endpoint is skipped after a 401 or 402."
    )


class CircuitBreaker:
    """The state of one endpoint: closed, open for a cooldown, or half-open with one probe request.

    Only retryable failures count against an endpoint; a 401 or 402 opens it
    at once because no retry can help. Other errors (a bad request, an
    unknown model) are the request's fault and count neither way.
    """

    def __init__(self, endpoint: str, settings: CircuitSettings, clock: Clock, metrics: Metrics) -> None:
        self.endpoint = endpoint
        self._settings = settings
        self._clock = clock
        self._metrics = metrics
        self._calls: deque[tuple[float, bool]] = deque()
        # Failures among `_calls`, kept in step with it so `record` costs O(1) and not O(window).
        self._failures = 0
        self._opened_at: float | None = None
        self._cooldown = settings.cooldown_seconds
        self._cause: ParleyError | None = None
        self._probing = False
        self._reported: CircuitState = "closed"
        metrics.set_circuit_state(endpoint, "closed")

    @property
    def state(self) -> CircuitState:
        state: CircuitState
        if self._opened_at is None:
            state = "closed"
        elif self._clock.monotonic() - self._opened_at < self._cooldown:
            state = "open"
        else:
            state = "half_open"

        # The cooldown ends without an event, so the gauge catches up when the state is next read.
        if state != self._reported:
            self._report(state)
        return state

    def _report(self, state: CircuitState) -> None:
        self._reported = state
        self._metrics.set_circuit_state(self.endpoint, state)

    def available(self) -> bool:
        """Return whether a request may go to the endpoint now."""
        state = self.state
        return state == "closed" or (state == "half_open" and not self._probing)

    def acquire(self) -> None:
        """Admit one request; raises CircuitOpenError while the endpoint is skipped."""
        state = self.state
        if state == "closed":
            return
        if state == "half_open" and not self._probing:
            self._probing = True
            logger.info("circuit of %s is half-open; sending one probe request", self.endpoint)
            return
        raise self.open_error()

    def open_error(self) -> CircuitOpenError:
        """Return the error for a request turned away, naming the cause and its fix."""
        remaining = 0.0
        if self._opened_at is not None:
            remaining = max(self._cooldown - (self._clock.monotonic() - self._opened_at), 0.0)
        cause = str(self._cause.short) if self._cause else "repeated failures"
        fix = self._cause.fix if isinstance(self._cause, (AuthError, InsufficientBalanceError)) else None
        # Past the cooldown the circuit is half-open, and requests are turned away
        # only while the one probe request is in flight.
        if remaining > 0:
            detail = f"{self.endpoint} is skipped for another {math.ceil(remaining)} s after {cause}"
        else:
            detail = f"{self.endpoint} is skipped after {cause} while one probe request checks whether it has recovered"
        return CircuitOpenError(
            detail,
            backend=self.endpoint,
            # The seconds the message states, or one second while the probe request is in flight.
            retry_after=max(math.ceil(remaining), 1),
            fix=fix,
            endpoint=self.endpoint,
            cause=cause,
        )

    def record(self, error: ParleyError | None) -> None:
        """Count the outcome of an admitted request: None for success, else the error it raised."""
        was_probe = self._probing
        self._probing = False

        if isinstance(error, (AuthError, InsufficientBalanceError)):
            self._open(error, self._settings.auth_cooldown_seconds)
            return
        if error is not None and not isinstance(error, RetryableError):
            return
        failed = error is not None

        if was_probe:
            if failed:
                self._open(error, self._settings.cooldown_seconds)
            else:
                self._close()
            return

        now = self._clock.monotonic()
        self._calls.append((now, failed))
        self._failures += failed
        while self._calls and now - self._calls[0][0] > self._settings.window_seconds:
            _, expired_failure = self._calls.popleft()
            self._failures -= expired_failure
        calls = len(self._calls)
        if calls >= self._settings.min_calls and self._failures > self._settings.failure_ratio * calls:
            self._open(error, self._settings.cooldown_seconds)

    def release(self) -> None:
        """End an admitted request without a verdict, as when the caller cancelled it."""
        self._probing = False

    def _open(self, cause: ParleyError | None, cooldown: float) -> None:
        self._opened_at = self._clock.monotonic()
        self._cooldown = cooldown
        self._cause = cause
        self._calls.clear()
        self._failures = 0
        label = cause.short if cause else "failures"
        self._report("open")
        self._metrics.circuit_opens.labels(endpoint=self.endpoint, cause=label).inc()
        logger.warning("circuit of %s opened for %.0f s after %s", self.endpoint, cooldown, cause)

    def _close(self) -> None:
        self._opened_at = None
        self._cause = None
        self._calls.clear()
        self._failures = 0
        self._report("closed")
        logger.info("circuit of %s closed after a successful probe", self.endpoint)
