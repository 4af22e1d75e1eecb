"""The `openai` backend: any server that speaks the OpenAI chat completions API.

DeepSeek, OpenAI, vLLM, the llama.cpp server, Ollama and LiteLLM all do.
A reply is streamed as server-sent events (see `backends.sse`) or, for a
model configured with `streaming = false`, read as one JSON body. Failures
are mapped to Parley's errors once, here, through `backends.openai_errors`.

Timeouts are kept by `backends.deadlines` rather than by httpx, because
httpx counts any byte as progress and a server that sends only keep-alive
comments would never time out. Only a content delta moves the first-token
and chunk-gap deadlines on.
"""

from __future__ import annotations

import asyncio
import logging
import os
from http.cookiejar import CookieJar, DefaultCookiePolicy
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any, Literal

import httpx
import orjson
from pydantic import Field, field_validator

from backends.base import Backend
from backends.deadlines import Deadlines
from backends.errors import AuthError, ConfigError, ConnectionFailedError, ImageNotSupportedError, NotFoundError, ParleyError, StreamIncompleteError, UpstreamTimeoutError
from backends.openai_errors import (
    BASE_URL_VERSION_FIX,
    MAX_ERROR_BODY_BYTES,
    Target,
    error_for_failure,
    error_for_transport,
    failure_from_body,
    failure_from_object,
)
from backends.redaction import Redactor
from backends.registry import BackendContext
from backends.settings import BackendSettings, ModelSettings
from backends.openai_wire import encode_request, finish_reason_of, usage_of
from backends.sse import SSEDecoder, SSEError
from backends.types import (
    Capabilities,
    ChatRequest,
    Event,
    Finished,
    FinishReason,
    Health,
    ModelInfo,
    ReasoningDelta,
    TextDelta,
)

logger = logging.getLogger(__name__)

# A reply sent as one JSON body larger than this is an upstream fault.
MAX_JSON_BODY_BYTES = 32 * 1024 * 1024
# After `data: [DONE]`, how long to wait for the end of the body so the
# connection can go back to the pool. A server that keeps it open is cut off.
_DRAIN_SECONDS = 1.0
# Header names that carry credentials, which belong in an environment variable.
_SECRET_HEADERS = frozenset({"authorization", "api-key", "x-api-key", "proxy-authorization"})


class OpenAIModelSettings(ModelSettings):
    streaming: bool = Field(
        default=True,
        description="Request a streamed reply; false for servers or models that only return one JSON body.",
    )


class Settings(BackendSettings):
    """A server that speaks the OpenAI chat completions API."""

    kind: Literal["openai"] = "openai"
    base_url: str = Field(description="API root with its version, such as https://api.deepseek.com/v1.")
    api_key_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Name of the environment variable that holds the API key; the key itself never goes in the config.",
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers sent with every request.")
    include_usage: bool = Field(default=True, description="Request stream_options.include_usage, so streamed replies report token counts.")
    require_done: bool = Field(
        default=True,
        description="Treat a stream that ends without `data: [DONE]` as cut off; false for servers that never send it.",
    )
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = Field(
        default="max_tokens",
        description="Request field that carries max_tokens; newer OpenAI models take max_completion_tokens.",
    )
    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra fields merged into every request body, for server-specific options.",
    )
    health_timeout: float = Field(default=5.0, gt=0, description="Seconds a health check waits for GET /models.")
    max_connections: int = Field(default=100, gt=0, description="Connections kept open to the server at most.")
    # A subclass of the base model list, so the type checker cannot accept it as an override.
    models: list[OpenAIModelSettings] = Field(default_factory=list)  # type: ignore[assignment]

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL as exc:
            raise ValueError(f"base_url {value!r} is not a valid URL: {exc}") from exc
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"base_url {value!r} must be an http:// or https:// URL with a host, such as https://api.deepseek.com/v1")
        return value.rstrip("/")

    @field_validator("headers")
    @classmethod
    def _reject_secret_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name.lower() in _SECRET_HEADERS:
                raise ValueError(f"header {name!r} carries a credential; put the key in an environment variable and name it in api_key_env")
        return value


class OpenAIBackend(Backend):
    """Streams chat completions from one OpenAI-compatible server."""

    def __init__(
        self, settings: Settings, client: httpx.AsyncClient, *, api_key_missing: bool = False, redactor: Redactor | None = None
    ) -> None:
        self.name = settings.name
        self._settings = settings
        self._client = client
        self._api_key_missing = api_key_missing
        self._redactor = redactor or Redactor()
        self._models = {model.name: model for model in settings.models}
        self._chat_url = f"{settings.base_url}/chat/completions"
        self._models_url = f"{settings.base_url}/models"
        self._last_reachable: bool | None = None

    def __repr__(self) -> str:
        return f"OpenAIBackend(name={self.name!r}, base_url={self._settings.base_url!r})"

    def models(self) -> list[ModelInfo]:
        return [
            ModelInfo(
                name=model.name,
                backend=self.name,
                upstream=model.upstream_id,
                capabilities=Capabilities(
                    streaming=model.streaming,
                    vision=model.vision,
                    reasoning=model.reasoning,
                    max_context=model.max_context,
                    ignored_params=frozenset(model.ignored_params),
                ),
            )
            for model in self._settings.models
        ]

    async def aclose(self) -> None:
        await self._client.aclose()

    # Request building

    def _target(self, model: OpenAIModelSettings) -> Target:
        return Target(
            backend=self.name,
            model=model.name,
            upstream=model.upstream_id,
            base_url=self._settings.base_url,
            api_key_env=self._settings.api_key_env,
            timeout_connect=self._settings.timeouts.connect,
            redactor=self._redactor,
        )

    def _resolve(self, name: str) -> OpenAIModelSettings:
        model = self._models.get(name)
        if model is None:
            known = ", ".join(sorted(self._models)) or "none"
            raise NotFoundError(
                f"backend {self.name} does not serve model {name!r}",
                backend=self.name,
                fix=f"Pick one of its models: {known}.",
                models=known,
            )
        return model

    def _check_request(self, request: ChatRequest, model: OpenAIModelSettings) -> bool:
        """Reject what the server would reject anyway; returns whether the request carries images."""
        if self._api_key_missing:
            env = self._settings.api_key_env
            raise AuthError(
                f"{env} is not set",
                backend=self.name,
                model=model.name,
                fix=f"Export {env} with the API key and restart Parley, or remove the {self.name} backend from the config.",
                api_key_env=env,
            )

        has_images = any(message.images for message in request.messages)
        if has_images and not model.vision:
            raise ImageNotSupportedError(
                f"model {model.name} does not accept images",
                backend=self.name,
                model=model.name,
                fix="Pick a model that can see images, remove the image, or set vision = true for this model in the config if it can.",
            )
        return has_images

    def _request_body(self, request: ChatRequest, model: OpenAIModelSettings) -> bytes:
        params = request.params.as_dict()
        for name in model.ignored_params:
            params.pop(name, None)
        if "max_tokens" in params and self._settings.max_tokens_field != "max_tokens":
            params[self._settings.max_tokens_field] = params.pop("max_tokens")
        return encode_request(
            request.messages,
            upstream=model.upstream_id,
            params=params,
            streaming=model.streaming,
            include_usage=self._settings.include_usage,
            extra_body=self._settings.extra_body,
        )

    # Streaming

    async def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        model = self._resolve(request.model)
        has_images = self._check_request(request, model)
        body = self._request_body(request, model)
        target = self._target(model)

        deadlines = Deadlines(self._settings.timeouts, backend=self.name, model=model.name)
        response: httpx.Response | None = None
        try:
            response = await self._send(body, model, deadlines)
            if not 200 <= response.status_code < 300:
                raise await self._status_error(response, target, deadlines, has_images)

            content_type = response.headers.get("content-type", "").lower()
            if content_type.startswith("text/event-stream"):
                events = self._read_events(response, target, deadlines, has_images)
            else:
                events = self._read_json(response, target, deadlines, has_images)
            async with aclosing(events):
                async for event in events:
                    yield event
        except httpx.HTTPError as exc:
            raise error_for_transport(exc, target, response_started=response is not None) from exc
        finally:
            if response is not None:
                # A client that leaves cancels this task, and the cancel can land in the
                # close. Cut short, the close would leave the upstream streaming the reply.
                await asyncio.shield(response.aclose())

    async def _send(self, body: bytes, model: OpenAIModelSettings, deadlines: Deadlines) -> httpx.Response:
        accept = "text/event-stream" if model.streaming else "application/json"
        headers = {"content-type": "application/json", "accept": accept}
        http_request = self._client.build_request("POST", self._chat_url, content=body, headers=headers)
        logger.debug("%s/%s: POST %s", self.name, model.name, self._chat_url)
        try:
            async with asyncio.timeout_at(deadlines.next()):
                return await self._client.send(http_request, stream=True)
        except TimeoutError as exc:
            raise deadlines.expired() from exc

    @staticmethod
    def _body_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
        """Return the body's chunks; skips httpx's decoder layer when the body is not compressed."""
        if response.headers.get("content-encoding", "identity").lower() == "identity":
            return response.aiter_raw()
        return response.aiter_bytes()

    async def _read_events(self, response: httpx.Response, target: Target, deadlines: Deadlines, has_images: bool) -> AsyncGenerator[Event, None]:
        """Turn an SSE body into events; the hot path of every streamed reply."""
        loop = asyncio.get_running_loop()
        decoder = SSEDecoder()
        loads = orjson.loads
        finish_reason: str | None = None
        raw_usage: Any = None
        done = False
        chars = 0
        first_token_at: float | None = None

        reads = deadlines.read(self._body_chunks(response))
        async with aclosing(reads):
            async for chunk in reads:
                if done:
                    # Reading on after [DONE] lets the connection go back to the pool.
                    continue
                read_at = loop.time()
                progressed = False
                try:
                    events = decoder.feed(chunk)
                except SSEError as exc:
                    raise StreamIncompleteError(str(exc), backend=target.backend, model=target.model) from exc

                for event in events:
                    data = event.data
                    if data == b"[DONE]":
                        done = True
                        break
                    try:
                        parsed = loads(data)
                        error = parsed.get("error") if event.event != "error" else parsed.get("error", parsed)
                        if error is not None:
                            raise error_for_failure(failure_from_object(error), target, has_images=has_images, mid_stream=True)

                        reasoning = content = None
                        choices = parsed.get("choices")
                        if choices:
                            choice = choices[0]
                            delta = choice.get("delta")
                            if delta:
                                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                                content = delta.get("content")
                            if choice.get("finish_reason"):
                                finish_reason = choice["finish_reason"]
                                progressed = True
                        if parsed.get("usage"):
                            raw_usage = parsed["usage"]
                            progressed = True
                    except (orjson.JSONDecodeError, AttributeError, TypeError, KeyError, IndexError) as exc:
                        if data.strip() == b"[DONE]":
                            # Some servers pad the end marker with spaces.
                            done = True
                            break
                        quoted = target.redactor.redact(repr(data[:120]))
                        raise StreamIncompleteError(
                            f"the server sent a chunk that is not a chat completion chunk: {quoted}",
                            backend=target.backend,
                            model=target.model,
                        ) from exc

                    if reasoning and type(reasoning) is str:
                        progressed = True
                        if first_token_at is None:
                            first_token_at = read_at
                        yield ReasoningDelta(reasoning)
                    if content and type(content) is str:
                        progressed = True
                        if first_token_at is None:
                            first_token_at = read_at
                        chars += len(content)
                        yield TextDelta(content)

                if progressed:
                    # A role-only first chunk is not progress; content, a finish reason or usage is.
                    deadlines.progress(read_at)
                if done:
                    deadlines.drain(_DRAIN_SECONDS)

            if not done:
                for event in decoder.flush():
                    if event.data == b"[DONE]":
                        done = True

        if not done and (self._settings.require_done or finish_reason is None):
            raise StreamIncompleteError(
                f"the stream ended without data: [DONE] after {chars} characters",
                backend=target.backend,
                model=target.model,
            )

        reason = self._finish_reason(finish_reason, target)
        self._log_reply(target, deadlines, first_token_at, chars, reason)
        if raw_usage is not None:
            yield usage_of(raw_usage)
        yield Finished(reason=reason, backend=self.name, model=target.model)

    async def _read_json(self, response: httpx.Response, target: Target, deadlines: Deadlines, has_images: bool) -> AsyncGenerator[Event, None]:
        """Read a reply sent as one JSON body; blank keep-alive lines before it are skipped."""
        body = bytearray()
        deadlines.whole_body = True
        reads = deadlines.read(self._body_chunks(response))
        async with aclosing(reads):
            async for chunk in reads:
                body += chunk
                if len(body) > MAX_JSON_BODY_BYTES:
                    raise StreamIncompleteError(
                        f"the reply body exceeds {MAX_JSON_BODY_BYTES} bytes",
                        backend=target.backend,
                        model=target.model,
                    )

        try:
            parsed = orjson.loads(body)
            error = parsed.get("error")
            if error is not None:
                raise error_for_failure(failure_from_object(error), target, has_images=has_images, mid_stream=True)
            choice = parsed["choices"][0]
            message = choice["message"]
            reasoning = message.get("reasoning_content") or message.get("reasoning")
            content = message.get("content")
            finish_reason = choice.get("finish_reason")
            raw_usage = parsed.get("usage")
        except (orjson.JSONDecodeError, AttributeError, TypeError, KeyError, IndexError) as exc:
            # A whole body that is not a chat completion usually means base_url
            # points at something other than an OpenAI-compatible API.
            quoted = target.redactor.redact(repr(bytes(body).strip()[:120].decode("utf-8", "replace")))
            raise ConnectionFailedError(
                f"the server at {target.base_url} sent a reply that is not a chat completion: {quoted}",
                backend=target.backend,
                model=target.model,
                fix=BASE_URL_VERSION_FIX,
            ) from exc

        reason = self._finish_reason(finish_reason, target)
        first_token_at = asyncio.get_running_loop().time()
        text = content if isinstance(content, str) else ""
        self._log_reply(target, deadlines, first_token_at, len(text), reason)
        if reasoning and isinstance(reasoning, str):
            yield ReasoningDelta(reasoning)
        if text:
            yield TextDelta(text)
        if raw_usage:
            yield usage_of(raw_usage)
        yield Finished(reason=reason, backend=self.name, model=target.model)

    def _finish_reason(self, raw: Any, target: Target) -> FinishReason:
        reason = finish_reason_of(raw)
        if reason is not None:
            return reason
        if raw == "insufficient_system_resource":
            # DeepSeek ends a reply this way when it runs out of capacity mid-reply.
            raise StreamIncompleteError(
                "the server cut the reply short (finish_reason insufficient_system_resource)",
                backend=target.backend,
                model=target.model,
            )
        logger.debug("%s/%s: unknown finish_reason %r taken as stop", target.backend, target.model, raw)
        return "stop"

    def _log_reply(self, target: Target, deadlines: Deadlines, first_token_at: float | None, chars: int, reason: str) -> None:
        now = asyncio.get_running_loop().time()
        first = f"{first_token_at - deadlines.start:.2f} s" if first_token_at is not None else "none"
        logger.info(
            "%s/%s: %d chars, finish %s, first token %s, total %.2f s",
            target.backend,
            target.model,
            chars,
            reason,
            first,
            now - deadlines.start,
        )

    async def _status_error(self, response: httpx.Response, target: Target, deadlines: Deadlines, has_images: bool) -> ParleyError:
        body = bytearray()
        try:
            reads = deadlines.read(self._body_chunks(response))
            async with aclosing(reads):
                async for chunk in reads:
                    body += chunk
                    if len(body) >= MAX_ERROR_BODY_BYTES:
                        break
        except (httpx.HTTPError, UpstreamTimeoutError):
            # The status alone still tells what failed, and a body cut short is quoted as far as it came.
            pass
        failure = failure_from_body(response.status_code, bytes(body[:MAX_ERROR_BODY_BYTES]), response.headers)
        return error_for_failure(failure, target, has_images=has_images)

    # Health

    async def health(self) -> Health:
        if self._api_key_missing:
            return Health(backend=self.name, reachable=False, detail=f"{self._settings.api_key_env} is not set")

        try:
            async with asyncio.timeout(self._settings.health_timeout):
                response = await self._client.get(self._models_url)
        except TimeoutError:
            detail = f"GET {self._models_url} timed out after {self._settings.health_timeout:g} s"
            return self._health(False, detail)
        except httpx.HTTPError as exc:
            detail = f"GET {self._models_url} failed: {str(exc) or type(exc).__name__}"
            return self._health(False, detail)

        if response.status_code == 200:
            return self._health(True, f"GET {self._models_url}: 200")
        failure = failure_from_body(response.status_code, response.content[:MAX_ERROR_BODY_BYTES], response.headers)
        model = self._settings.models[0] if self._settings.models else OpenAIModelSettings(name="-")
        error = error_for_failure(failure, self._target(model), has_images=False)
        # A 404 for the model list is not about a model id: base_url points at the wrong path.
        fix = BASE_URL_VERSION_FIX if response.status_code == 404 else error.fix
        # The upstream's own text is left out because it can echo part of the key ("Your api key: ****CRET").
        return self._health(False, f"GET {self._models_url}: HTTP {response.status_code} ({error.code}). {fix}")

    def _health(self, reachable: bool, detail: str) -> Health:
        if reachable != self._last_reachable:
            # Log changes only: health checks repeat, and a steady state needs no new line.
            level = logging.INFO if reachable else logging.WARNING
            logger.log(level, "backend %s is %s: %s", self.name, "reachable" if reachable else "unreachable", detail)
            self._last_reachable = reachable
        return Health(backend=self.name, reachable=reachable, detail=detail)


def create(settings: BackendSettings, context: BackendContext) -> OpenAIBackend:
    """Build the backend; the API key is read from the environment here, once."""
    if not isinstance(settings, Settings):
        raise ConfigError(f"backend {settings.name} was given {type(settings).__name__}, not openai Settings")

    headers = {"user-agent": "parley", **settings.headers}
    api_key_missing = False
    redactor = Redactor(context.secrets)
    if settings.api_key_env:
        api_key = context.env.get(settings.api_key_env) or os.environ.get(settings.api_key_env)
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
            redactor = redactor.with_secrets([api_key])
        else:
            api_key_missing = True
            logger.warning(
                "%s, named by api_key_env of backend %s in %s, is not set; "
                "requests to that backend will fail until it is exported and Parley restarts",
                settings.api_key_env,
                settings.name,
                context.config_source,
            )

    timeouts = settings.timeouts
    # Read timeouts are kept per content delta by the backend, so httpx only
    # bounds connecting and waiting for a pooled connection.
    # One client serves every user's requests, so a cookie that the upstream
    # (or a load balancer in front of it) sets for one request must not be
    # sent with the next: the jar's policy accepts no domain.
    no_cookies = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
    client = httpx.AsyncClient(
        transport=context.http_transport,
        headers=headers,
        cookies=no_cookies,
        timeout=httpx.Timeout(connect=timeouts.connect, read=None, write=timeouts.total, pool=timeouts.connect),
        limits=httpx.Limits(max_connections=settings.max_connections, max_keepalive_connections=settings.max_connections),
    )
    return OpenAIBackend(settings, client, api_key_missing=api_key_missing, redactor=redactor)
