"""Make browsers set to "zh" or "zh-Hans" get the Chinese labels.

Gradio 6.31's frontend picks the UI language only among its own locales
("zh-CN", "zh-TW", ...), falling back to the part before "-" and then to
English, so "zh" and "zh-Hans" got English labels even with a "zh" table.
`ChineseLocaleMiddleware` puts a script at the top of the page's <head>
that reports those locales as "zh-CN" before Gradio's scripts read it.
(Gradio's own `head=` option is injected after start-up, too late.)
"""

from __future__ import annotations

from starlette.types import ASGIApp

from ui.page_rewrite import PageRewriteMiddleware

LOCALE_SCRIPT = b"""<script>
(function () {
  var locale = (navigator.language || "").toLowerCase();
  if (locale === "zh" || locale.indexOf("zh-hans") === 0 || locale === "zh-sg") {
    Object.defineProperty(navigator, "language", { get: function () { return "zh-CN"; } });
  }
})();
</script>"""


def insert_locale_script(page: bytes) -> bytes:
    return page.replace(b"<head>", b"<head>" + LOCALE_SCRIPT, 1)


class ChineseLocaleMiddleware(PageRewriteMiddleware):
    """Insert `LOCALE_SCRIPT` into the HTML page served at `path`."""

    def __init__(self, app: ASGIApp, path: str = "/") -> None:
        super().__init__(app, path, insert_locale_script)
