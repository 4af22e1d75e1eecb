"""One mapping from `ParleyError` to OpenAI's error JSON and an HTTP status.

OpenAI clients read `{"error": {"message", "type", "code", "param"}}`; the
`type` follows OpenAI's names so SDKs raise their matching exception class.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backends.errors import BadRequestError, ParleyError

logger = logging.getLogger(__name__)

_TYPES_BY_STATUS = {
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}


class MethodNotAllowedError(BadRequestError):
    """A known API path called with a method it does not accept."""

    code = "method_not_allowed"
    http_status = 405


def error_type(status: int) -> str:
    """Return OpenAI's error `type` for an HTTP status."""
    if status in _TYPES_BY_STATUS:
        return _TYPES_BY_STATUS[status]
    return "invalid_request_error" if status < 500 else "server_error"


def error_body(error: ParleyError) -> dict[str, Any]:
    """Build the OpenAI error object; `param` names the request field at fault, if any."""
    param = error.params.get("param")
    return {
        "error": {
            "message": str(error),
            "type": error_type(error.http_status),
            "code": error.code,
            "param": param if isinstance(param, str) else None,
        }
    }


def error_response(error: ParleyError) -> JSONResponse:
    headers: dict[str, str] = {}
    if error.retry_after is not None:
        # Whole seconds, rounded up so a client does not come back early.
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    if error.http_status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    allow = error.params.get("allow")
    if error.http_status == 405 and isinstance(allow, str):
        headers["Allow"] = allow
    return JSONResponse(error_body(error), status_code=error.http_status, headers=headers)


def sse_error(error: ParleyError) -> bytes:
    """Encode an error as the last event of a stream that has already started."""
    return b"data: " + json.dumps(error_body(error), ensure_ascii=False).encode() + b"\n\n"


def internal_error(exc: BaseException) -> ParleyError:
    """Wrap an unexpected exception; the message hides internals and points to the log."""
    return ParleyError(f"internal error ({type(exc).__name__})", fix="Retry; the server log has the details.")


async def _handle_parley_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ParleyError)
    if exc.http_status >= 500:
        logger.warning("%s %s failed: %s", request.method, request.url.path, exc)
    return error_response(exc)


class UnexpectedErrorMiddleware:
    """Turn an unexpected exception into one logged traceback and OpenAI's 500 error JSON.

    Starlette's handler for `Exception` re-raises after responding, so uvicorn
    logged the traceback a second time. This middleware handles the exception
    and does not re-raise it, unless the response had already started: then
    no error response can be sent, and uvicorn logs the traceback and closes
    the connection.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        response_started = False

        async def send_tracking(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception as exc:
            if response_started:
                raise
            logger.exception("%s %s failed with an unexpected error", scope["method"], scope["path"], exc_info=exc)
            await error_response(internal_error(exc))(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ParleyError, _handle_parley_error)
    app.add_middleware(UnexpectedErrorMiddleware)
