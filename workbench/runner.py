"""One measured model call: build the request, stream it through the Router, time it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from backends.errors import ImageNotSupportedError, ParleyError
from backends.layers.fallback import CANNED_BACKEND, CANNED_MODEL
from backends.router import Router
from backends.types import (
    ChatRequest,
    Finished,
    ImagePart,
    Message,
    Notice,
    ReasoningDelta,
    SamplingParams,
    TextDelta,
    TextPart,
    Usage,
)
from workbench.errors import CannedReplyError
from workbench.presets import split_ignored

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class RunSpec:
    """The settings of a run: a model, its sampling parameters and an optional system prompt."""

    model: str
    params: SamplingParams = field(default_factory=SamplingParams)
    system_prompt: str = ""


@dataclass(frozen=True, slots=True)
class RunResult:
    """The measured outcome of one call.

    `ttft_s` is the time to the first text or reasoning token. `tokens` is
    the completion token count the backend reported, or, where it reported
    none, the number of streamed chunks (`tokens_estimated` is then True).
    `tokens_per_s` is (tokens - 1) over the time from the first token to the
    end, so it measures generation speed without the wait for the first token.
    """

    text: str
    reasoning: str
    ttft_s: float | None
    total_s: float
    tokens: int
    tokens_estimated: bool
    tokens_per_s: float | None
    served_by: str
    cached: bool
    finish_reason: str
    error: str | None = None
    error_code: str | None = None
    notices: tuple[str, ...] = ()
    ignored_params: tuple[str, ...] = ()
    # The error itself, so a UI can translate it by its code and params.
    exception: ParleyError | None = field(default=None, repr=False, compare=False)

    @property
    def chars(self) -> int:
        return len(self.text)

    @property
    def ok(self) -> bool:
        return self.error is None


def build_request(
    router: Router,
    spec: RunSpec,
    prompt: str,
    *,
    bypass_cache: bool,
    language: str = "en",
    images: tuple[ImagePart, ...] = (),
) -> tuple[ChatRequest, tuple[str, ...]]:
    """Build the request for a prompt and optional images; parameters the model ignores are left out and returned.

    Raises NotFoundError for a model the router does not serve, and
    ImageNotSupportedError for images sent to a model without vision. That
    check comes first because a fallback chain would otherwise answer for
    the model being measured.

    The request turns the canned reply off: a run measures a model, so a
    chain that fails everywhere must end in its error (such as overloaded),
    not in an apology that would count as the model's answer.
    """
    info = router.info(spec.model)
    if images and not info.capabilities.vision:
        raise ImageNotSupportedError("the model cannot see images", model=spec.model)
    params, dropped = split_ignored(spec.params, info.capabilities)

    messages = [Message(role="user", parts=(TextPart(prompt), *images))]
    if spec.system_prompt.strip():
        messages.insert(0, Message.text("system", spec.system_prompt))
    request = ChatRequest(
        messages=tuple(messages),
        model=spec.model,
        params=params,
        bypass_cache=bypass_cache,
        language=language,
        allow_canned_reply=False,
    )
    return request, dropped


class RunRecorder:
    """Collects the events of one stream as they arrive, so a UI can show the text so far."""

    def __init__(self, clock: Clock = time.perf_counter) -> None:
        self._clock = clock
        self.started = clock()
        self.first_token_at: float | None = None
        self.ended_at: float | None = None
        self.text = ""
        self.reasoning = ""
        self.chunks = 0
        self.reported_tokens: int | None = None
        self.served_by = ""
        self.cached = False
        self.finish_reason = ""
        self.notices: list[str] = []
        self.error: ParleyError | None = None

    def record(self, event: object) -> None:
        if isinstance(event, TextDelta | ReasoningDelta):
            if self.first_token_at is None:
                self.first_token_at = self._clock()
            self.chunks += 1
            if isinstance(event, TextDelta):
                self.text += event.text
            else:
                self.reasoning += event.text
        elif isinstance(event, Usage):
            if event.completion_tokens is not None:
                self.reported_tokens = event.completion_tokens
        elif isinstance(event, Notice):
            self.notices.append(event.message)
        elif isinstance(event, Finished):
            self.served_by = event.served_by
            self.cached = event.cached
            self.finish_reason = event.reason
            if event.backend == CANNED_BACKEND and event.model == CANNED_MODEL:
                self._reject_canned_reply(event)

    def _reject_canned_reply(self, event: Finished) -> None:
        """Record a canned reply as a failed run and drop its text, which no model wrote.

        `build_request` turns the canned reply off, so this only runs for a
        request built elsewhere or a layer that ignores the flag.
        """
        failures = ", ".join(event.failures) or "no model"
        self.text = ""
        self.reasoning = ""
        self.first_token_at = None
        self.chunks = 0
        self.reported_tokens = None
        self.fail(
            CannedReplyError(f"no model replied: the fallback chain ended in the canned reply after {failures}", failures=failures)
        )

    def fail(self, error: ParleyError) -> None:
        self.error = error
        self.finish_reason = "error"

    def elapsed(self) -> float:
        end = self.ended_at if self.ended_at is not None else self._clock()
        return end - self.started

    def result(self, ignored_params: tuple[str, ...] = ()) -> RunResult:
        if self.ended_at is None:
            self.ended_at = self._clock()

        tokens = self.reported_tokens if self.reported_tokens is not None else self.chunks
        rate = None
        if self.first_token_at is not None and tokens > 1 and self.ended_at > self.first_token_at:
            rate = (tokens - 1) / (self.ended_at - self.first_token_at)

        return RunResult(
            text=self.text,
            reasoning=self.reasoning,
            ttft_s=None if self.first_token_at is None else self.first_token_at - self.started,
            total_s=self.ended_at - self.started,
            tokens=tokens,
            tokens_estimated=self.reported_tokens is None,
            tokens_per_s=rate,
            served_by=self.served_by,
            cached=self.cached,
            finish_reason=self.finish_reason or "cancelled",
            error=None if self.error is None else str(self.error),
            error_code=None if self.error is None else self.error.code,
            notices=tuple(self.notices),
            ignored_params=ignored_params,
            exception=self.error,
        )


async def run_once(
    router: Router,
    spec: RunSpec,
    prompt: str,
    *,
    bypass_cache: bool = True,
    language: str = "en",
    clock: Clock = time.perf_counter,
    recorder: RunRecorder | None = None,
    images: tuple[ImagePart, ...] = (),
) -> RunResult:
    """Stream one reply and measure it; a ParleyError becomes the result's `error`, not an exception.

    Cancellation propagates after the upstream stream is closed.
    """
    recorder = recorder or RunRecorder(clock)
    try:
        request, dropped = build_request(
            router, spec, prompt, bypass_cache=bypass_cache, language=language, images=images
        )
    except ParleyError as exc:
        recorder.fail(exc)
        return recorder.result()

    stream = router.stream(request)
    try:
        async for event in stream:
            recorder.record(event)
    except ParleyError as exc:
        logger.info("run on %s failed: %s", spec.model, exc)
        recorder.fail(exc)
    finally:
        # Router.stream is typed as an iterator but is an async generator, which must
        # be closed so the upstream request is released on cancellation too.
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()
    return recorder.result(dropped)
