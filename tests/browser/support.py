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


def send_message(page: Any, text: str, *, wait_for_echo: bool = True) -> None:
    """Type `text` into the chat input and press Enter.

    Checks that the box contains the text before Enter, so a failure
    shows whether the typed text or the sent message was lost. With `wait_for_echo`, waits
    until the chat shows one more user message, and on a timeout reports
    what the input box and the toasts hold.
    """
    expect = pytest.importorskip("playwright.sync_api").expect
    box = page.locator("#parley-input textarea")
    user_messages = page.locator("[data-testid=user]")
    count_before = user_messages.count()

    box.fill(text)
    expect(box).to_have_value(text)
    box.press("Enter")

    if not wait_for_echo:
        return
    try:
        expect(user_messages).to_have_count(count_before + 1, timeout=20_000)
    except AssertionError as error:
        toasts = page.locator(".toast-body").all_inner_texts()
        raise AssertionError(f"the chat shows no new user message after Enter; the input box contains {box.input_value()!r}, toasts: {toasts}") from error
