"""Mapping of OpenAI-compatible API failures to Parley's errors.

The `openai` backend calls these once, at its boundary: an HTTP status with
its error body, an `{"error": {...}}` object inside a 200 stream, or an
httpx transport exception. Each error names the backend, the model and the
fix; retry and fallback then decide by class.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from backends.errors import (
    AuthError,
    BadRequestError,
    ConnectionFailedError,
    ContentFilteredError,
    ContextTooLongError,
    ImageNotSupportedError,
    InsufficientBalanceError,
    NotFoundError,
    OverloadedError,
    ParleyError,
    RateLimitedError,
    RetryableError,
    StreamIncompleteError,
    UpstreamTimeoutError,
)
from backends.redaction import Redactor

# Bytes of an error body to read. Error bodies are short, and a proxy's HTML
# page is recognisable from its start.
MAX_ERROR_BODY_BYTES = 64 * 1024
_QUOTED_CHARS = 300
# Characters of an HTML page's title kept in its summary.
_HTML_TITLE_CHARS = 120

_CONTEXT_TOO_LONG = re.compile(
    r"context[ _-]?(?:length|window|size)|maximum context|too many tokens|prompt is too long",
    re.IGNORECASE,
)
_CONTEXT_TOO_LONG_CODES = frozenset({"context_length_exceeded", "string_above_max_length", "exceed_context_size_error"})
_IMAGE_REJECTED = re.compile(r"image|vision|multimodal", re.IGNORECASE)
_CONTENT_FILTER_CODES = frozenset({"content_filter", "content_policy_violation", "data_inspection_failed"})
# DeepSeek rejects flagged prompts with 400 and this message rather than a code.
_CONTENT_FILTER_MESSAGE = re.compile(r"content exists risk", re.IGNORECASE)
_QUOTA_CODES = frozenset({"insufficient_quota", "insufficient_balance", "billing_hard_limit_reached"})
_AUTH_TYPES = frozenset({"authentication_error", "invalid_api_key", "permission_error"})
_RATE_LIMIT_TYPES = frozenset({"rate_limit_error", "rate_limit_exceeded", "requests", "tokens"})
_HTML_START = re.compile(rb"\s*<(?:!doctype\s+html|html|head|body)\b", re.IGNORECASE)
_HTML_HEADING = re.compile(r"<(title|h1|h2)\b[^>]*>(.*?)</\1\s*>", re.IGNORECASE | re.DOTALL)
_HTML_TAG = re.compile(r"<[^>]*>")

# The fix when the server at base_url is not an OpenAI-compatible API, or lacks its version path.
BASE_URL_VERSION_FIX = "Check that base_url in the config points at an OpenAI-compatible API, including its version path such as /v1."


@dataclass(frozen=True, slots=True)
class Target:
    """The backend, model and URL of a request, for error messages.

    `redactor` masks secrets in the upstream's text before it goes into an error.
    """

    backend: str
    model: str
    upstream: str
    base_url: str
    api_key_env: str | None
    timeout_connect: float
    redactor: Redactor = field(default_factory=Redactor, repr=False)


@dataclass(frozen=True, slots=True)
class UpstreamFailure:
    """The parts of an upstream error that decide its class and message."""

    status: int
    message: str
    code: str
    retry_after: float | None = None
    # Where a 3xx status points, so the error can name the URL to configure.
    location: str | None = None


def parse_retry_after(headers: httpx.Headers) -> float | None:
    """Return the wait in seconds from retry-after-ms or Retry-After (seconds or an HTTP date)."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        seconds = _finite(milliseconds)
        if seconds is not None:
            return max(seconds / 1000, 0.0)

    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _finite(value)
    if seconds is not None:
        return max(seconds, 0.0)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max((when - datetime.now(timezone.utc)).total_seconds(), 0.0)


def _finite(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def failure_from_body(status: int, body: bytes, headers: httpx.Headers) -> UpstreamFailure:
    """Read the message and code out of an error body: OpenAI's shape, common variants, or plain text."""
    message = ""
    code = ""
    try:
        parsed: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None

    if isinstance(parsed, dict):
        message, code = _message_and_code(parsed.get("error", parsed))
    if not message and _is_html(body, headers):
        message = summarize_html(body)
    if not message:
        message = body.decode("utf-8", "replace").strip()
    return UpstreamFailure(
        status=status,
        message=_quote(message),
        code=code,
        retry_after=parse_retry_after(headers),
        location=headers.get("location"),
    )


def _is_html(body: bytes, headers: httpx.Headers) -> bool:
    content_type = headers.get("content-type", "").lower()
    return content_type.startswith("text/html") or bool(_HTML_START.match(body))


def summarize_html(body: bytes) -> str:
    """Describe an HTML error page, such as a proxy's, by its title or first heading, without its markup."""
    page = body.decode("utf-8", "replace")
    for match in _HTML_HEADING.finditer(page):
        title = " ".join(html.unescape(_HTML_TAG.sub(" ", match.group(2))).split())
        if title:
            if len(title) > _HTML_TITLE_CHARS:
                title = title[:_HTML_TITLE_CHARS] + "…"
            return f"an HTML error page: {title}"
    return "an HTML error page"


def failure_from_object(error: Any) -> UpstreamFailure:
    """Turn an error object sent inside a 200 stream into a failure with the status it stands for."""
    message, code = _message_and_code(error)
    status = 500
    raw_status = error.get("status") if isinstance(error, dict) else None
    if isinstance(raw_status, int) and 400 <= raw_status < 600:
        status = raw_status
    elif code.isdigit() and 400 <= int(code) < 600:
        status = int(code)
    elif code in _RATE_LIMIT_TYPES:
        status = 429
    elif code in _QUOTA_CODES:
        status = 402
    elif code in _AUTH_TYPES:
        status = 401
    elif code in _CONTEXT_TOO_LONG_CODES or code in _CONTENT_FILTER_CODES or code == "invalid_request_error":
        status = 400
    return UpstreamFailure(status=status, message=_quote(message or "error inside the stream"), code=code)


def _message_and_code(error: Any) -> tuple[str, str]:
    if isinstance(error, str):
        return error, ""
    if not isinstance(error, dict):
        return "", ""

    message = error.get("message") or error.get("detail") or error.get("msg") or ""
    if not isinstance(message, str):
        message = orjson.dumps(message).decode()
    # OpenAI puts the specific reason in "code" and the family in "type";
    # the specific one decides the class, so it comes first.
    code = error.get("code") or error.get("type") or ""
    return message, str(code)


def _quote(message: str) -> str:
    message = " ".join(message.split())
    if len(message) > _QUOTED_CHARS:
        return message[:_QUOTED_CHARS] + "…"
    return message


def error_for_failure(failure: UpstreamFailure, target: Target, *, has_images: bool, mid_stream: bool = False) -> ParleyError:
    """Build the typed error for an upstream failure, with a message that names the fix."""
    status = failure.status
    where = "inside the stream" if mid_stream else f"HTTP {status}"
    # Where the upstream's error text enters this backend's errors; some servers repeat the key in it.
    message = target.redactor.redact(failure.message)
    detail = f"{where} from {target.base_url}: {message}" if message else f"{where} from {target.base_url}"
    common: dict[str, Any] = {"backend": target.backend, "model": target.model, "status": status}
    code = failure.code

    if code in _QUOTA_CODES or status == 402:
        return InsufficientBalanceError(detail, **common)
    if status in (401, 403) or code in _AUTH_TYPES:
        return _auth_error(detail, target, common)
    if status == 429:
        return RateLimitedError(detail, retry_after=failure.retry_after, **common)
    if status == 404:
        # Two causes give a 404: a wrong model id, or a base_url without the version path.
        # With the latter every path is unknown, and FastAPI-based servers send {"detail": "Not Found"}.
        return NotFoundError(
            detail,
            fix=(
                f"Check that the upstream model id {target.upstream!r} exists on {target.base_url} "
                f"(GET {target.base_url}/models lists them), and that base_url in the config includes "
                "the API version path such as /v1; fix `upstream` or base_url in the config."
            ),
            **common,
        )
    if status in (408, 504):
        return UpstreamTimeoutError(detail, **common)
    if status == 502:
        # A proxy in front of the model server got no valid response, which is not a sign that the server is busy.
        return RetryableError(detail, **common)
    if status >= 500:
        return OverloadedError(detail, **common)
    if 300 <= status < 400:
        # httpx does not follow redirects here: a POST that is redirected loses its body on 301 and 302.
        target_url = target.redactor.redact(failure.location) if failure.location else "another URL"
        return BadRequestError(
            f"HTTP {status} from {target.base_url}: redirected to {target_url}",
            fix="Set base_url in the config to the URL the server redirects to.",
            **common,
        )
    return _bad_request_error(detail, message, failure.code, has_images, common)


def _auth_error(detail: str, target: Target, common: dict[str, Any]) -> AuthError:
    if target.api_key_env:
        fix = f"Check the API key in the environment variable {target.api_key_env}, export the right one and restart Parley."
        return AuthError(detail, fix=fix, api_key_env=target.api_key_env, **common)
    fix = f"The {target.backend} backend sends no API key; set api_key_env in its config to the environment variable that holds one."
    return AuthError(detail, fix=fix, **common)


def _bad_request_error(detail: str, message: str, code: str, has_images: bool, common: dict[str, Any]) -> ParleyError:
    if code in _CONTEXT_TOO_LONG_CODES or _CONTEXT_TOO_LONG.search(message):
        return ContextTooLongError(detail, **common)
    if code in _CONTENT_FILTER_CODES or _CONTENT_FILTER_MESSAGE.search(message):
        return ContentFilteredError(detail, **common)
    if has_images and _IMAGE_REJECTED.search(message):
        return ImageNotSupportedError(detail, **common)
    return BadRequestError(detail, fix="Check the sampling parameters and the model's settings in the config.", **common)


def error_for_transport(exc: httpx.HTTPError, target: Target, *, response_started: bool) -> ParleyError:
    """Map an httpx exception; once the response has started, a broken connection cuts the reply short."""
    common: dict[str, Any] = {"backend": target.backend, "model": target.model}
    reason = target.redactor.redact(str(exc)) or type(exc).__name__

    if isinstance(exc, httpx.ConnectTimeout):
        return ConnectionFailedError(f"connecting to {target.base_url} timed out after {target.timeout_connect:g} s", **common)
    if isinstance(exc, httpx.ConnectError):
        return ConnectionFailedError(f"cannot connect to {target.base_url}: {reason}", **common)
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeoutError(f"{target.base_url} timed out: {reason}", **common)
    if response_started:
        return StreamIncompleteError(f"the connection to {target.base_url} broke during the reply: {reason}", **common)
    return ConnectionFailedError(f"the request to {target.base_url} failed: {reason}", **common)
