"""The fallback chain: other models, then a canned reply, when a model fails before its first token."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

from pydantic import Field, field_validator

from backends.base import Backend
from backends.errors import (
    AuthError,
    ConfigError,
    ContextTooLongError,
    ImageNotSupportedError,
    InsufficientBalanceError,
    NotFoundError,
    ParleyError,
    RetryableError,
)
from backends.layers import messages
from backends.layers.errors import CircuitOpenError, ThrottledError
from backends.layers.metrics import Metrics
from backends.layers.retry import describe_failures, failure_labels
from backends.layers.layer import HandOff, Relay, StreamEnd, close_stream
from backends.settings import StrictModel
from backends.types import ChatRequest, Event, Finished, Health, ModelInfo, Notice, ReasoningDelta, TextDelta

logger = logging.getLogger(__name__)

# Failures another model may not share. A bad request, filtered content or
# invalid input would fail anywhere, and a canned reply would hide the mistake,
# so those reach the caller.
FALLBACK_ERRORS: tuple[type[ParleyError], ...] = (
    RetryableError,
    AuthError,
    InsufficientBalanceError,
    NotFoundError,
    ContextTooLongError,
    ImageNotSupportedError,
    CircuitOpenError,
    ThrottledError,
)

# Failures with a fix the user or operator can apply: the user's request
# (too long for this model, an image it cannot see) or this model's account
# (a wrong key, no balance). Another model may avoid them, so the chain may
# try others, but never ends in the canned reply for them: "try again later"
# would hide the fix.
USER_ERRORS: tuple[type[ParleyError], ...] = (
    ContextTooLongError,
    ImageNotSupportedError,
    AuthError,
    InsufficientBalanceError,
)

# The backend and model names a served-by line shows for a canned reply.
CANNED_BACKEND = "parley"
CANNED_MODEL = "canned-reply"


class FallbackSettings(StrictModel):
    """The `[resilience.fallback]` section."""

    canned_reply: bool = Field(
        default=True, description="End every fallback chain with a prepared reply instead of an error."
    )
    canned_text: dict[str, str] = Field(
        default_factory=lambda: {language: messages.text("canned_reply", language) for language in messages.LANGUAGES},
        description="The prepared reply by UI language; English is used for a language without one.",
    )

    @field_validator("canned_text")
    @classmethod
    def _needs_english(cls, value: dict[str, str]) -> dict[str, str]:
        if not value.get("en"):
            raise ValueError("canned_text needs an 'en' entry, the reply for languages without their own")
        return value


def expand_chains(fallbacks: Mapping[str, Sequence[str]], owners: Mapping[str, str]) -> dict[str, list[str]]:
    """Return each model's full chain: itself, then its fallbacks and theirs, depth first, each model once.

    `fallbacks` maps every configured public model name to its `fallback`
    list and `owners` maps it to its backend's name, for messages. Raises
    ConfigError for an unknown name or a loop, naming the key and the fix.
    """
    chains: dict[str, list[str]] = {}
    for model in fallbacks:
        chain: list[str] = []
        _visit(model, [], fallbacks, owners, chain)
        chains[model] = chain
    return chains


def _visit(
    model: str, path: list[str], fallbacks: Mapping[str, Sequence[str]], owners: Mapping[str, str], chain: list[str]
) -> None:
    if model in path:
        loop = " -> ".join([*path[path.index(model) :], model])
        raise ConfigError(
            f"the fallback chain loops: {loop}",
            fix=f"Remove {model!r} from the fallback list of model {path[-1]!r} "
            f"(backend {owners[path[-1]]!r} in [[backends]]).",
        )

    if model not in chain:
        chain.append(model)
    for step in fallbacks[model]:
        if step not in fallbacks:
            known = ", ".join(sorted(fallbacks))
            raise ConfigError(
                f"the fallback list of model {model!r} (backend {owners[model]!r} in [[backends]]) "
                f"names unknown model {step!r}",
                fix=f"Use one of the configured models ({known}) or remove {step!r} from that list.",
            )
        _visit(step, [*path, model], fallbacks, owners, chain)


@dataclass(frozen=True)
class ChainStep:
    """One model of a chain: its public name and the stack that serves it."""

    model: str
    backend: Backend


class FallbackLayer(Backend):
    """Tries each model of a chain until one starts streaming, then the canned reply.

    The canned reply is left out, and the chain's error raised in its place,
    when the settings or the request (`allow_canned_reply`) turn it off, or
    when a model failed in a way the user can fix (USER_ERRORS).

    A failure after the first text or reasoning delta ends the reply
    instead: a Notice(kind="interrupted") and Finished(reason="error") keep
    the partial text, and nothing is sent again. Every Finished carries the
    failures before it, for the served-by line.
    """

    def __init__(self, chain: Sequence[ChainStep], settings: FallbackSettings, *, metrics: Metrics) -> None:
        if not chain:
            raise ValueError("a fallback chain needs at least one model")
        self.name = chain[0].backend.name
        self._chain = list(chain)
        self._settings = settings
        self._metrics = metrics

    def models(self) -> list[ModelInfo]:
        return self._chain[0].backend.models()

    async def health(self) -> Health:
        return await self._chain[0].backend.health()

    def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        return Relay(self._start(request))

    async def _start(self, request: ChatRequest) -> AsyncGenerator[Event | HandOff, None]:
        failures: list[str] = []
        last_error: ParleyError | None = None
        user_error: ParleyError | None = None

        for index, step in enumerate(self._chain):
            handed_off = False
            inner = step.backend.stream(dataclasses.replace(request, model=step.model))
            try:
                async for event in inner:
                    if type(event) is TextDelta or type(event) is ReasoningDelta:
                        # From the first token on, a failure only ends the reply: `_Delivered` does that.
                        handed_off = True
                        yield HandOff(inner, first=event, end=_Delivered(request, step, failures))
                        return
                    if type(event) is Finished and failures:
                        event = dataclasses.replace(event, failures=(*failures, *event.failures))
                    yield event
                return
            except ParleyError as error:
                failures.append(describe_failures(step.model, failure_labels(error)))
                if not isinstance(error, FALLBACK_ERRORS):
                    error.params["failures"] = tuple(failures)
                    raise
                last_error = error
                if user_error is None and isinstance(error, USER_ERRORS):
                    user_error = error
            finally:
                if not handed_off:
                    await close_stream(inner)

            # Before the next step: count, log, tell the user.
            following = self._chain[index + 1].model if index + 1 < len(self._chain) else None
            if following is None and not self._may_end_canned(request, user_error):
                break
            self._metrics.fallbacks.labels(model=request.model, to=following or CANNED_MODEL).inc()
            logger.warning(
                "falling back from %s to %s after %s", step.model, following or "the canned reply", last_error
            )
            notice_key = "falling_back" if following else "falling_back_canned"
            yield Notice(
                kind="falling_back",
                message=messages.text(
                    notice_key, request.language, model=step.model, error=last_error.short, next=following
                ),
                model=following or "",
                failures=tuple(failures),
            )

        if last_error is not None and not self._may_end_canned(request, user_error):
            # A fixable failure outranks a later model's outage, because its message names what to change.
            raised = user_error or last_error
            raised.params["failures"] = tuple(failures)
            raise raised

        text = self._settings.canned_text.get(request.language) or self._settings.canned_text["en"]
        yield TextDelta(text)
        yield Finished(reason="stop", backend=CANNED_BACKEND, model=CANNED_MODEL, failures=tuple(failures))

    def _may_end_canned(self, request: ChatRequest, user_error: ParleyError | None) -> bool:
        return self._settings.canned_reply and request.allow_canned_reply and user_error is None

    async def aclose(self) -> None:
        # The steps are shared routes of other models; the pipeline closes each once.
        return None


class _Delivered(StreamEnd):
    """The end of a reply whose first token has passed: a failure ends it as interrupted, keeping the text."""

    def __init__(self, request: ChatRequest, step: ChainStep, failures: list[str]) -> None:
        self._request = request
        self._step = step
        self._failures = failures

    def finished(self, event: Finished) -> Finished:
        if self._failures:
            return dataclasses.replace(event, failures=(*self._failures, *event.failures))
        return event

    def failed(self, error: ParleyError) -> list[Event]:
        step = self._step
        self._failures.append(describe_failures(step.model, failure_labels(error)))
        logger.warning("reply from %s interrupted after its first token: %s", step.model, error)
        notice = Notice(
            kind="interrupted",
            message=messages.text("interrupted", self._request.language, model=step.model, error=error.short),
        )
        finished = Finished(
            reason="error",
            backend=error.backend or step.backend.name,
            model=step.model,
            failures=tuple(self._failures),
        )
        return [notice, finished]
