"""Make browsers set to "zh" or "zh-Hans" get the Chinese labels.

Gradio 6.31's frontend picks the UI language only among its own locales
("zh-CN", "zh-TW", ...), falling back to the part before "-" and then to
English, so "zh" and "zh-Hans" got English labels even with a "zh" table.
`ChineseLocaleMiddleware` puts a script at the top of the page's <head>
that reports those locales as "zh-CN" before Gradio's scripts read it.
(Gradio's own `head=` option is injected after start-up, too late.)
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOCALE_SCRIPT = b"""<script>
(function () {
  var locale = (navigator.language || "").toLowerCase();
  if (locale === "zh" || locale.indexOf("zh-hans") === 0 || locale === "zh-sg") {
    Object.defineProperty(navigator, "language", { get: function () { return "zh-CN"; } });
  }
})();
</script>"""


class ChineseLocaleMiddleware:
    """Insert `LOCALE_SCRIPT` into the HTML page served at `path`."""

    def __init__(self, app: ASGIApp, path: str = "/") -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return

        # Ask for an uncompressed page so the script can be inserted.
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
                body = body.replace(b"<head>", b"<head>" + LOCALE_SCRIPT, 1)
                response_headers["content-length"] = str(len(body))
            await send({**start, "headers": response_headers.raw})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, rewrite)
