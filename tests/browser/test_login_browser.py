"""The UI login in headless Chromium: Gradio's login form in Chinese, then a chat."""

from __future__ import annotations

import shutil

import pytest

from tests.browser.support import CHROMIUM, CHROMIUM_ARGS, send_message
from tests.ui_support import scripted_config, serve_parley

pytestmark = pytest.mark.browser

PASSWORD = "correct-horse-battery-42"


def test_login_form_then_chat() -> None:
    if not shutil.which(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed; run `make system-packages`")
    playwright_api = pytest.importorskip("playwright.sync_api")
    expect = playwright_api.expect

    with serve_parley(scripted_config(), env={"PARLEY_UI_PASSWORD": PASSWORD}) as url, playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(locale="zh-CN").new_page()
        try:
            page.goto(url + "/", wait_until="load")
            page.get_by_label("用户名").fill("parley")
            page.get_by_label("密码").fill("wrong-password")
            page.get_by_role("button", name="登录").click()
            expect(page.get_by_text("凭据不正确")).to_be_visible(timeout=20_000)

            # Gradio clears both fields after a failed login.
            page.get_by_label("用户名").fill("parley")
            page.get_by_label("密码").fill(PASSWORD)
            page.get_by_role("button", name="登录").click()
            page.locator("#parley-input textarea").wait_for(timeout=30_000)
            send_message(page, "你好，登录之后")

            expect(page.locator("[data-testid=bot]").first).to_contain_text("你好，登录之后", timeout=20_000)
        finally:
            browser.close()
