"""The base of the layers that wrap one inner backend, and stream helpers they share."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, cast

from backends.base import Backend
from backends.errors import ParleyError
from backends.types import Event, Finished, Health, ModelInfo


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




class StreamEnd:
    """A layer's work at the end of a stream it handed off; see `HandOff`.

    The reader that took the end over (see `take_over`) calls `finished` or
    `failed` at most once, then `closed` once, whether the stream ended,
    failed or was cancelled.
    """

    def finished(self, event: Finished) -> Finished:
        """Note that `event` is passing to the caller; returns it or the event to pass in its place."""
        return event

    def failed(self, error: ParleyError) -> list[Event] | None:
        """Note that the stream raised `error`; returns the events that end the stream instead, or None to raise."""
        return None

    def closed(self) -> None:
        """Release what the stream held; called last."""


@dataclass(frozen=True, slots=True)
class HandOff:
    """Yielded by a layer's start phase when it has no more work per event: `rest` serves the stream from here on.

    `first`, if set, is the next event for the caller, so handing off costs
    no extra step. `end`, if set, must see how the stream ends.
    """

    rest: AsyncIterator[Event]
    first: Event | None = None
    end: StreamEnd | None = None


class Relay(AsyncIterator[Event]):
    """The stream of a layer that has work per event only up to some point, such as the first token.

    `start` is an async generator that yields events and finally one
    `HandOff`. It must not close the inner stream after that, because the
    relay closes `start` right away and the stream lives on. After the hand-off the layer is no
    longer a step that every chunk and every wait for the socket pass
    through: a reader takes the stream and the layers' ends over with
    `take_over`. Read directly, the relay does the same itself, in one
    step for all the relays below it that handed off.

    It has the methods of an async generator, so `close_stream` and callers
    that `aclose()` streams treat it as one; `aclose()` closes the rest.
    """

    __slots__ = ("_start", "_rest", "_handed", "_end")

    def __init__(self, start: AsyncGenerator[Event | HandOff, None]) -> None:
        self._start = start
        # What `__anext__` reads after the hand-off and its ends were taken over.
        self._rest: AsyncIterator[Event] | None = None
        # The inner stream and this layer's end, between the hand-off and a take-over.
        self._handed: AsyncIterator[Event] | None = None
        self._end: StreamEnd | None = None

    def __anext__(self) -> Awaitable[Event]:
        if self._rest is not None:
            return self._rest.__anext__()
        if self._handed is not None:
            rest, ends = take_over(self)
            self._rest = _watch(rest, ends) if ends else rest
            return self._rest.__anext__()
        return self._from_start()

    async def _from_start(self) -> Event:
        item = await self._start.__anext__()
        if type(item) is not HandOff:
            return cast(Event, item)

        await self._start.aclose()
        self._handed = item.rest
        self._end = item.end
        if item.first is not None:
            return item.first
        return await self.__anext__()

    async def asend(self, value: None) -> Event:
        return await self.__anext__()

    async def athrow(self, typ: Any, val: Any = None, tb: Any = None) -> Event:
        # Nothing in Parley throws into a stream; this completes the async generator methods.
        if self._rest is None and self._handed is None:
            return cast(Event, await self._start.athrow(typ, val, tb))
        await self.aclose()
        raise typ if val is None else val

    async def aclose(self) -> None:
        await self._start.aclose()
        ends = [self._end] if self._end is not None else []
        rest = self._rest if self._rest is not None else self._handed
        self._rest = self._handed = self._end = None
        try:
            if rest is not None:
                await close_stream(rest)
        finally:
            end_closed(ends)


def take_over(stream: AsyncIterator[Event]) -> tuple[AsyncIterator[Event], list[StreamEnd]]:
    """Return the innermost stream that relays handed off to, and their ends, innermost first.

    The caller reads the rest of the reply from the returned stream, which
    saves every relay's step on each chunk, and must pass each Finished
    through `end_finished`, a failure to `end_failed` and its own close to
    `end_closed`. It still closes `stream` itself, which closes the rest.
    """
    ends: list[StreamEnd] = []
    while type(stream) is Relay and stream._handed is not None:
        if stream._end is not None:
            ends.append(stream._end)
        handed = stream._handed
        # From now on the relay only forwards; its end belongs to the caller.
        stream._rest, stream._handed, stream._end = handed, None, None
        stream = handed
    ends.reverse()
    return stream, ends


def end_finished(ends: list[StreamEnd], event: Finished) -> Finished:
    """Pass a Finished event through every end, innermost first; returns the event to yield."""
    for end in ends:
        event = end.finished(event)
    return event


def end_failed(ends: list[StreamEnd], error: ParleyError) -> list[Event]:
    """Report a failure to the ends, innermost first; returns the events an end put in its place, else raises `error`.

    The ends outside the one that replaced the failure see the replacement's
    Finished, as if the stream had ended with it.
    """
    for position, end in enumerate(ends):
        replacement = end.failed(error)
        if replacement is not None:
            outer = ends[position + 1 :]
            return [end_finished(outer, event) if type(event) is Finished else event for event in replacement]
    raise error


def end_closed(ends: list[StreamEnd]) -> None:
    """Report the close to every end, innermost first, and empty the list so no end hears it twice."""
    for end in ends:
        end.closed()
    ends.clear()


async def _watch(stream: AsyncIterator[Event], ends: list[StreamEnd]) -> AsyncGenerator[Event, None]:
    try:
        async for event in stream:
            if type(event) is Finished:
                event = end_finished(ends, event)
            yield event
    except ParleyError as error:
        for event in end_failed(ends, error):
            yield event
    finally:
        end_closed(ends)
        await close_stream(stream)
