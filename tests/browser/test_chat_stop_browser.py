"""Stop in the Chat tab before the model's first token, in headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.support import open_page, send_message
from tests.ui_support import scripted_config, serve_parley

pytestmark = pytest.mark.browser

# Long enough that every Stop in these tests lands before the first token.
FIRST_TOKEN_DELAY_S = 60

# Gradio marks an event's outputs with this status element when the event failed.
ERROR_STATUS = "#parley-chatbot .error, #parley-input .error"


@pytest.fixture(scope="module")
def app_url() -> Iterator[str]:
    raw = scripted_config(replies=[{"text": "太晚了"}], first_token_delay=FIRST_TOKEN_DELAY_S)
    with serve_parley(raw) as url:
        yield url


@pytest.fixture
def page(app_url: str) -> Iterator[Any]:
    with open_page(app_url + "/", locale="zh-CN") as page:
        yield page


def test_early_stops_show_no_error(page: Any) -> None:
    # A slowed-down page makes Stop overlap the reply's first update, as on a
    # busy machine; at full speed the race is lost only now and then.
    page.context.new_cdp_session(page).send("Emulation.setCPUThrottlingRate", {"rate": 8})
    errors_after_stop: dict[int, int] = {}
    for delay_ms in (0, 100, 200, 300):
        send_message(page, f"你好 {delay_ms}", wait_for_echo=False)
        page.wait_for_timeout(delay_ms)
        page.locator("#parley-stop").click()
        page.wait_for_timeout(4000)

        errors_after_stop[delay_ms] = page.locator(ERROR_STATUS).count()
        page.locator("#parley-clear").click()
        page.wait_for_timeout(1500)

    assert errors_after_stop == {0: 0, 100: 0, 200: 0, 300: 0}
    assert page.locator(".toast-body").count() == 0


def test_stop_while_waiting_shows_no_error_and_allows_retry(page: Any) -> None:
    expect = pytest.importorskip("playwright.sync_api").expect
    chatbot = page.locator("#parley-chatbot")

    send_message(page, "你好")
    expect(chatbot).to_contain_text("正在等待", timeout=20_000)
    page.locator("#parley-stop").click()

    expect(chatbot).to_contain_text("已停止", timeout=10_000)
    page.wait_for_timeout(1000)
    assert page.locator(ERROR_STATUS).count() == 0

    # Retry starts a new reply, which shows the waiting line again.
    retry = chatbot.locator("button[aria-label=Retry], button[aria-label=重试]").last
    retry.click(timeout=5_000)
    expect(chatbot).to_contain_text("正在等待", timeout=10_000)
    assert "已停止" not in chatbot.inner_text()
