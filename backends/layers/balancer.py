"""The balancer: spreads a model's requests over its endpoints within their rate limits."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass

from pydantic import Field

from backends.base import Backend
from backends.errors import ParleyError
from backends.layers.circuit import CircuitBreaker
from backends.layers.clock import Clock
from backends.layers.errors import ThrottledError
from backends.layers.metrics import Metrics
from backends.layers.ratelimit import RateLimiter
from backends.layers.layer import HandOff, Relay, StreamEnd, close_stream
from backends.settings import StrictModel
from backends.types import ChatRequest, Event, Finished, Health, ModelInfo

logger = logging.getLogger(__name__)


class EndpointSettings(StrictModel):
    """One extra endpoint of an openai backend: another base URL serving the same models."""

    name: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_.-]+$", description="Label in logs and metrics; defaults to backend-N."
    )
    base_url: str = Field(min_length=1)
    api_key_env: str | None = Field(default=None, description="Environment variable holding this endpoint's key.")
    weight: float = Field(default=1.0, gt=0, description="Share of requests when endpoints are equally busy.")
    requests_per_second: float | None = Field(default=None, gt=0, description="Rate limit; unset means none.")


class BackendEndpoints(StrictModel):
    """The `[resilience.backends.NAME]` section: endpoints and rate limit of one configured backend."""

    weight: float = Field(default=1.0, gt=0, description="Weight of the backend's own base_url among its endpoints.")
    requests_per_second: float | None = Field(
        default=None, gt=0, description="Rate limit of the backend's own base_url; unset means none."
    )
    burst: int = Field(default=1, ge=1, description="Requests an idle endpoint may send at once.")
    endpoints: list[EndpointSettings] = Field(default_factory=list, description="More base URLs for the same models.")


class BalancerSettings(StrictModel):
    """The `[resilience.balancer]` section."""

    max_wait_seconds: float = Field(
        default=2.0, ge=0, description="Maximum wait for a rate limit token before the next endpoint or fallback."
    )


@dataclass
class Endpoint:
    """One place a model can be reached: a bare backend, its breaker, rate limit and load.

    One `Endpoint` exists per base URL and is shared by the balancers of all
    the models it serves, so `in_flight` counts every request sent to it.
    """

    backend: Backend
    breaker: CircuitBreaker
    weight: float = 1.0
    limiter: RateLimiter | None = None
    in_flight: int = 0
    served: int = 0

    @property
    def name(self) -> str:
        return self.breaker.endpoint


class BalancerLayer(Backend):
    """Sends each request to the available endpoint with the fewest requests in flight.

    Ties go to the endpoint that has served the least for its weight, so
    weights set the split while endpoints are equally busy. An endpoint whose
    rate limit would make the request wait longer than `max_wait_seconds`
    is passed over. When every endpoint is skipped, the error names the
    reason, and the fallback chain takes over.

    The balancer is also each endpoint's circuit breaker layer: it skips
    endpoints whose breaker is open and reports every outcome to the
    breaker. Doing both in one layer saves a step per chunk, and after the
    first event the stream is handed off (see `Relay`), so a reader that
    takes over its end leaves no balancer step on the path of later chunks.
    """

    def __init__(self, endpoints: Sequence[Endpoint], settings: BalancerSettings, *, clock: Clock, metrics: Metrics) -> None:
        if not endpoints:
            raise ValueError("a balancer needs at least one endpoint")
        self.name = endpoints[0].backend.name
        self.endpoints = list(endpoints)
        self._settings = settings
        self._clock = clock
        self._metrics = metrics

    def models(self) -> list[ModelInfo]:
        return self.endpoints[0].backend.models()

    async def health(self) -> Health:
        return await self.endpoints[0].backend.health()

    def _candidates(self) -> list[Endpoint]:
        available = [endpoint for endpoint in self.endpoints if endpoint.breaker.available()]
        return sorted(
            available,
            key=lambda endpoint: (endpoint.in_flight, endpoint.served / endpoint.weight, self.endpoints.index(endpoint)),
        )

    async def _admit(self, request: ChatRequest) -> Endpoint:
        candidates = self._candidates()
        if not candidates:
            # Every circuit is open: report the first endpoint's cause and fix.
            raise self.endpoints[0].breaker.open_error()

        for endpoint in candidates:
            if endpoint.limiter is not None:
                wait = await endpoint.limiter.reserve(self._settings.max_wait_seconds)
                if wait is None:
                    logger.info("%s is at its rate limit; trying the next endpoint for %s", endpoint.name, request.model)
                    continue
                self._metrics.rate_limit_waits.labels(endpoint=endpoint.name).observe(wait)
                if wait > 0:
                    await self._clock.sleep(wait)
            # Raises CircuitOpenError if the circuit opened, or another request took the probe, meanwhile.
            endpoint.breaker.acquire()
            return endpoint

        names = ", ".join(endpoint.name for endpoint in candidates)
        raise ThrottledError(
            f"every endpoint of {request.model} ({names}) is at its rate limit for over "
            f"{self._settings.max_wait_seconds:g} s",
            backend=self.name,
            model=request.model,
        )

    def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        return Relay(self._start(request))

    async def _start(self, request: ChatRequest) -> AsyncGenerator[Event | HandOff, None]:
        endpoint = await self._admit(request)

        endpoint.in_flight += 1
        endpoint.served += 1
        admission = _Admission(endpoint)
        handed_off = False
        inner = endpoint.backend.stream(request)
        try:
            async for event in inner:
                if type(event) is Finished:
                    yield admission.finished(event)
                    continue
                # The breaker needs only the end of the stream, which `admission` sees from here on.
                handed_off = True
                yield HandOff(inner, first=event, end=admission)
                return
        except ParleyError as error:
            admission.failed(error)
            raise
        finally:
            if not handed_off:
                admission.closed()
                await close_stream(inner)

    async def aclose(self) -> None:
        # Endpoints are shared with other models' balancers; the pipeline closes each backend once.
        return None


class _Admission(StreamEnd):
    """One request admitted to an endpoint: reports its outcome to the breaker and its end to the load count."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self._verdict_recorded = False
        self._closed = False

    def finished(self, event: Finished) -> Finished:
        if not self._verdict_recorded:
            self._verdict_recorded = True
            self._endpoint.breaker.record(None)
        return event

    def failed(self, error: ParleyError) -> None:
        if not self._verdict_recorded:
            self._verdict_recorded = True
            self._endpoint.breaker.record(error)
        return None

    def closed(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._endpoint.in_flight -= 1
        if not self._verdict_recorded:
            # Cancelled by the caller: neither a success nor a failure of the endpoint.
            self._endpoint.breaker.release()
