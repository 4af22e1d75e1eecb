"""An ASGI middleware that edits the HTML page Gradio serves at one path."""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class PageRewriteMiddleware:
    """Pass the HTML body of GET `path` through `transform` before it reaches the browser.

    The request goes on without Accept-Encoding, so the page arrives
    uncompressed; a compressed or non-HTML response is passed on unchanged.
    """

    def __init__(self, app: ASGIApp, path: str, transform: Callable[[bytes], bytes]) -> None:
        self.app = app
        self.path = path
        self.transform = transform

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return

        headers = [(name, value) for name, value in scope["headers"] if name.lower() != b"accept-encoding"]
        scope = {**scope, "headers": headers}
        start: Message | None = None
        chunks: list[bytes] = []

        async def rewrite(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return

            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            response_headers = MutableHeaders(raw=list(start["headers"]))
            if response_headers.get("content-type", "").startswith("text/html") and "content-encoding" not in response_headers:
                body = self.transform(body)
                response_headers["content-length"] = str(len(body))
            await send({**start, "headers": response_headers.raw})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, rewrite)
