"""Headless Chromium for the browser tests: Debian's /usr/bin/chromium driven by Playwright."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextmanager
def open_page(url: str, *, locale: str) -> Iterator[Any]:
    """Open `url` in a fresh browser context with `locale`; skips the test without Chromium or Playwright.

    Waits for the chat input, which Gradio renders after the page's config loads.
    """
    if not shutil.which(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed; run `make system-packages`")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(locale=locale)
        page = context.new_page()
        try:
            page.goto(url, wait_until="load")
            page.locator("#parley-input textarea").wait_for(timeout=30_000)
            yield page
        finally:
            context.close()
            browser.close()
