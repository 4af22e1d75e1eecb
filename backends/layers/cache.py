"""The response cache layer: replays a complete earlier reply to the same request."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Literal

from pydantic import Field

from backends.base import Backend
from backends.errors import ParleyError
from backends.layers import messages
from backends.layers.cache_store import CacheStore, Entry
from backends.layers.metrics import Metrics
from backends.layers.layer import Layer, StreamEnd, close_stream, end_closed, end_failed, end_finished, take_over
from backends.settings import StrictModel
from backends.types import (
    ChatRequest,
    Event,
    Finished,
    ImagePart,
    Notice,
    ReasoningDelta,
    TextDelta,
)

logger = logging.getLogger(__name__)

# Bump when the key's inputs or the entry format change, so old entries are never read.
KEY_VERSION = 1

# Only replies that ended on their own are worth replaying.
CACHEABLE_REASONS = frozenset({"stop", "length"})


class CacheSettings(StrictModel):
    """The `[resilience.cache]` section."""

    enabled: bool = True
    store: Literal["memory", "redis"] = Field(
        default="memory", description="Where entries live; redis needs resilience.redis_url."
    )
    ttl_seconds: float = Field(default=3600.0, gt=0, description="Seconds an entry is replayed after it was stored.")
    max_entries: int = Field(default=1000, gt=0, description="Entries kept in memory before the least recent goes.")
    cache_sampled: bool = Field(
        default=False,
        description="Also cache replies sampled with temperature > 0; off so a regenerated reply is a new sample.",
    )


def cache_key(request: ChatRequest, backend: str, upstream_model: str) -> str:
    """Return the hex sha256 of everything that shapes a reply.

    Images count by their sha256; sampling parameters count as set, so an
    omitted parameter differs from one set to its default value.
    """
    conversation = [
        {
            "role": message.role,
            "parts": [
                {"image": part.sha256, "mime": part.mime} if isinstance(part, ImagePart) else {"text": part.text}
                for part in message.parts
            ],
        }
        for message in request.messages
    ]
    canonical = json.dumps(
        {
            "version": KEY_VERSION,
            "backend": backend,
            "model": upstream_model,
            "messages": conversation,
            "params": request.params.as_dict(),
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class CacheLayer(Layer):
    """Replays complete replies from a `CacheStore` and stores fresh complete ones.

    Only replies that finished with reason "stop" or "length" from the
    requested model itself are stored. Errors, interrupted and cancelled
    replies, content-filtered ones and streams that broke off are never
    stored, and neither is a reply from a fallback model or the canned reply.

    `bypass_cache` skips the lookup but still stores the fresh reply, so a
    regenerated reply replaces the entry it bypassed.
    """

    def __init__(
        self,
        inner: Backend,
        store: CacheStore,
        settings: CacheSettings,
        *,
        backend: str,
        upstream_model: str,
        metrics: Metrics,
    ) -> None:
        super().__init__(inner)
        self._store = store
        self._settings = settings
        self._backend = backend
        self._upstream = upstream_model
        self._metrics = metrics

    def _cacheable(self, request: ChatRequest) -> bool:
        temperature = request.params.temperature
        # An omitted temperature is the backend's default, which Parley cannot see; it counts as unsampled.
        sampled = temperature is not None and temperature > 0
        return self._settings.cache_sampled or not sampled

    async def store(self, request: ChatRequest, key: str, entry: Entry) -> None:
        await self._store.set(key, entry)
        self._metrics.cache_stores.labels(model=request.model).inc()

    def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        if not self._cacheable(request):
            # Nothing to look up or store: the caller reads the inner stream without this layer's step.
            return self._inner.stream(request)
        return self._cached(request)

    async def _cached(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        key = cache_key(request, self._backend, self._upstream)

        if request.bypass_cache:
            self._metrics.cache_lookups.labels(model=request.model, result="bypass").inc()
        else:
            entry = await self._store.get(key)
            if entry is not None and entry.get("version") == KEY_VERSION:
                self._metrics.cache_lookups.labels(model=request.model, result="hit").inc()
                for event in _replay(entry, request.language):
                    yield event
                return
            self._metrics.cache_lookups.labels(model=request.model, result="miss").inc()

        # A miss or a bypass: record the reply in this same generator, one step per chunk.
        recorder = _Recorder(self, request, key)
        add_text = recorder.text.append
        ends: list[StreamEnd] = []
        inner = self._inner.stream(request)
        try:
            async for event in inner:
                await recorder.note(event)
                yield event
                if type(event) is TextDelta or type(event) is ReasoningDelta:
                    break
            else:
                return

            # After the first token: the layers below hand their streams over (see `Relay`),
            # and text deltas, nearly every event, take one type check and an append.
            rest, ends = take_over(inner)
            try:
                async for event in rest:
                    if type(event) is TextDelta:
                        add_text(event.text)
                    else:
                        if type(event) is Finished:
                            event = end_finished(ends, event)
                        await recorder.note(event)
                    yield event
            except ParleyError as error:
                for event in end_failed(ends, error):
                    await recorder.note(event)
                    yield event
        finally:
            end_closed(ends)
            await close_stream(inner)


class _Recorder:
    """The reply a cache miss is recording, stored when it finishes complete."""

    def __init__(self, layer: CacheLayer, request: ChatRequest, key: str) -> None:
        self.text: list[str] = []
        self._reasoning: list[str] = []
        self._fell_back = False
        self._layer = layer
        self._request = request
        self._key = key

    async def note(self, event: Event) -> None:
        # Exact type checks: before the first token and for the rarer events after it.
        if type(event) is TextDelta:
            self.text.append(event.text)
        elif type(event) is ReasoningDelta:
            self._reasoning.append(event.text)
        elif isinstance(event, Notice) and event.kind == "falling_back":
            self._fell_back = True
        elif isinstance(event, Finished) and event.reason in CACHEABLE_REASONS and not self._fell_back:
            # Stored before the caller sees Finished: a caller may close the stream right after it.
            await self._layer.store(self._request, self._key, _entry(event, "".join(self.text), "".join(self._reasoning)))


def _entry(finished: Finished, text: str, reasoning: str) -> Entry:
    return {
        "version": KEY_VERSION,
        "text": text,
        "reasoning": reasoning,
        "reason": finished.reason,
        "backend": finished.backend,
        "model": finished.model,
    }


def _replay(entry: Entry, language: str) -> list[Event]:
    events: list[Event] = [Notice(kind="cached", message=messages.text("cached", language))]
    if entry.get("reasoning"):
        events.append(ReasoningDelta(str(entry["reasoning"])))
    if entry.get("text"):
        events.append(TextDelta(str(entry["text"])))
    # No Usage event: an entry stores no token counts, so they stay unreported (null to API clients).
    reason: Any = entry.get("reason") if entry.get("reason") in CACHEABLE_REASONS else "stop"
    events.append(
        Finished(reason=reason, backend=str(entry.get("backend", "")), model=str(entry.get("model", "")), cached=True)
    )
    return events
