"""The one exception tree of Parley.

Every failure a caller can see is a `ParleyError`. Library exceptions
(httpx, websockets, llama.cpp, pydantic) are mapped to these classes once,
at the boundary of the module that calls the library, with `raise ... from exc`.

Retry and fallback decide by class (`retryable`), never by message text.
The UI translates an error by its `code` and formats the translation with
`params`; the English `str(error)` is for logs and API clients.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ParleyError(Exception):
    """Root of all Parley errors.

    Attributes:
        detail: what failed, in one sentence, with the value at fault.
        backend, model: who failed, empty where no backend was involved.
        status: the upstream HTTP status, where there was one.
        retry_after: seconds the upstream asked us to wait, where it did.
        params: extra values for the translated message (for example the
            name of the environment variable that holds a key).
    """

    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False
    # A sentence that names what the user can do; subclasses override it and
    # a raise site may pass a more specific one.
    fix: str = "Retry, and report the problem if it persists."

    def __init__(
        self,
        detail: str,
        *,
        backend: str = "",
        model: str = "",
        status: int | None = None,
        retry_after: float | None = None,
        fix: str | None = None,
        **params: Any,
    ) -> None:
        # A full stop of either language: the fix follows as a sentence of its own.
        self.detail = detail.rstrip(".。")
        self.backend = backend
        self.model = model
        self.status = status
        self.retry_after = retry_after
        self.params = params
        if fix is not None:
            self.fix = fix
        super().__init__(self._compose())

    @property
    def where(self) -> str:
        if self.backend and self.model:
            return f"{self.backend}/{self.model}"
        return self.backend or self.model

    @property
    def short(self) -> str:
        """A compact label for served-by lines, such as "503" or "timeout"."""
        return str(self.status) if self.status else self.code

    def _compose(self) -> str:
        prefix = f"{self.where}: " if self.where else ""
        return f"{prefix}{self.detail}. {self.fix}".strip()


# Errors a retry or another endpoint can help with.


class RetryableError(ParleyError):
    retryable = True
    http_status = 503
    code = "upstream_unavailable"
    fix = "Retry in a moment or pick another model."


class RateLimitedError(RetryableError):
    code = "rate_limited"
    http_status = 429
    fix = "Wait a moment and retry, or pick another model."


class OverloadedError(RetryableError):
    code = "overloaded"
    http_status = 503
    fix = "The server is busy or failing; retry later or pick another model."


class UpstreamTimeoutError(RetryableError):
    code = "timeout"
    http_status = 504
    fix = "The server did not answer in time; retry later or pick another model."


class ConnectionFailedError(RetryableError):
    code = "connection_failed"
    http_status = 502
    fix = "Check that the server is running and its base_url in the config is right."


class StreamIncompleteError(RetryableError):
    """The upstream stream ended without its end marker; the reply may be cut short."""

    code = "stream_incomplete"
    http_status = 502
    fix = "The reply was cut off; retry it."


# Errors that fail the same way every time they are retried.


class BadRequestError(ParleyError):
    code = "bad_request"
    http_status = 400
    fix = "Check the request and its parameters."


# An upstream that rejects Parley's own key or account is a bad gateway for
# Parley's clients: 401 or 402 would tell them their key to Parley is wrong.
# The gateway's own key check raises a subclass that keeps 401 (api/auth.py).


class AuthError(ParleyError):
    code = "auth_failed"
    http_status = 502
    fix = "Check the API key in the environment variable named by api_key_env."


class InsufficientBalanceError(ParleyError):
    code = "insufficient_balance"
    http_status = 502
    fix = "Top up the account balance with the provider, or pick another model."


class NotFoundError(ParleyError):
    code = "not_found"
    http_status = 404
    fix = "Pick one of the models listed by GET /v1/models."


class ContextTooLongError(ParleyError):
    code = "context_too_long"
    http_status = 400
    # Neutral wording: API clients read it as is, and the UI shows its own translated text for this code.
    fix = "Send fewer or shorter messages, or use a model with a larger context."


class ImageNotSupportedError(ParleyError):
    code = "image_not_supported"
    http_status = 400
    fix = "Pick a model that can see images, or remove the image."


class ContentFilteredError(ParleyError):
    code = "content_filtered"
    http_status = 400
    fix = "Rephrase the request."


class InvalidInputError(ParleyError):
    """Input from a user (a prompt, an image, a recording) that Parley rejects."""

    code = "invalid_input"
    http_status = 400
    fix = "Change the input and try again."


class InputTooLargeError(InvalidInputError):
    code = "input_too_large"
    http_status = 413
    fix = "Send something smaller; the limit is in the config."


class ConfigError(ParleyError):
    """A config file or environment that cannot start Parley."""

    code = "config_error"
    fix = "Fix the config file and start Parley again."


def error_class_for_code(code: str) -> type[ParleyError]:
    """Return the class of this module whose `code` is `code`.

    Used where an error crosses a wire or a config file by its code (the
    WebSocket protocol, the scripted backend). An unknown code maps to
    `ParleyError`, so a newer peer's code still becomes a typed error.
    """
    return _CLASSES_BY_CODE.get(code, ParleyError)


def _collect_classes_by_code() -> dict[str, type[ParleyError]]:
    # Only the classes defined here: subclasses elsewhere may reuse a code.
    found: dict[str, type[ParleyError]] = {}
    pending: list[type[ParleyError]] = [ParleyError]
    while pending:
        cls = pending.pop()
        if cls.__module__ == __name__:
            found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return found


_CLASSES_BY_CODE: dict[str, type[ParleyError]] = _collect_classes_by_code()

ERROR_CODES: frozenset[str] = frozenset(_CLASSES_BY_CODE)
