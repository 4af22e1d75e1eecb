"""The preset picker in headless Chromium: a preset sets the chat's sliders, moving a slider makes it custom."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ui_support import scripted_config, serve_parley

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.browser


@pytest.fixture
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    raw = scripted_config(model="reasoner")
    raw["backends"][0]["models"] = [{"name": "reasoner", "ignored_params": ["temperature", "top_p"]}]
    raw["presets"] = {"data_dir": str(tmp_path_factory.mktemp("data"))}
    with serve_parley(raw) as url:
        yield url


def test_preset_sets_chat_sliders_in_chinese(app_url: str) -> None:
    with playwright_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            page = browser.new_context(locale="zh-CN").new_page()
            page.goto(app_url + "/")
            page.locator("#parley-sampling").get_by_text("模型与采样").click()

            picker = page.locator("#parley-preset input")
            picker.click()
            page.get_by_role("option", name="创意写作").click()

            temperature = page.locator("#parley-temperature input[type=number]")
            playwright_api.expect(temperature).to_have_value("0.9")
            playwright_api.expect(page.locator("#parley-top-p input[type=number]")).to_have_value("0.95")
            playwright_api.expect(page.locator("#parley-system-prompt textarea")).to_have_value(
                "You are an imaginative writer. Use vivid, concrete language and avoid clichés. "
                "Write in the language of the request."
            )
            playwright_api.expect(page.locator("#parley-ignored-params")).to_contain_text(
                "reasoner 会忽略 temperature, top_p"
            )

            temperature.fill("0.4")
            temperature.press("Enter")
            playwright_api.expect(picker).to_have_value("自定义")
        finally:
            browser.close()


def test_scenarios_tab_saves_preset_for_chat(app_url: str) -> None:
    with playwright_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            page = browser.new_context(locale="zh-CN").new_page()
            page.goto(app_url + "/")
            page.get_by_role("tab", name="场景").click()

            preset = page.locator("#parley-scn-preset input")
            preset.click()
            page.get_by_role("option", name="摘要").click()
            playwright_api.expect(page.locator("#parley-scn-description")).to_contain_text("简短、客观地概括要点")
            playwright_api.expect(page.locator("#parley-scn-max-tokens input[type=number]")).to_have_value("512")
            playwright_api.expect(page.locator("#parley-scn-frequency input[type=number]")).to_have_value("0.3")

            page.locator("#parley-scn-name textarea").fill("我的摘要")
            page.locator("#parley-scn-save").click()
            playwright_api.expect(page.locator("#parley-scn-status")).to_contain_text("已保存预设“我的摘要”。")
            playwright_api.expect(preset).to_have_value("我的摘要")

            page.get_by_role("tab", name="对话").click()
            page.locator("#parley-sampling").get_by_text("模型与采样").click()
            page.locator("#parley-preset input").click()
            page.get_by_role("option", name="我的摘要").click()
            playwright_api.expect(page.locator("#parley-max-tokens input[type=number]")).to_have_value("512")
        finally:
            browser.close()


def test_batch_tab_shows_progress_until_done(app_url: str, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.csv"
    prompts.write_bytes("提示词,答案\n你好,ok\n再见,ok\n谢谢,ok\n".encode("gbk"))

    with playwright_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            page = browser.new_context(locale="zh-CN").new_page()
            page.goto(app_url + "/")
            page.get_by_role("tab", name="批量").click()

            page.locator("#parley-batch-file input[type=file]").set_input_files(str(prompts))
            playwright_api.expect(page.locator("#parley-batch-parsed")).to_contain_text("已读取 3 条提示词")
            page.locator("#parley-batch-temperatures textarea").fill("0.2, 0.8")
            page.locator("#parley-batch-start").click()

            # The timer polls the job until it ends; no click is needed to see the result.
            done = page.locator('#parley-batch-progress-text[data-state="done"]')
            playwright_api.expect(done).to_contain_text("已完成 6/6 次运行", timeout=30_000)
            playwright_api.expect(page.locator("#parley-batch-bar")).to_have_attribute("value", "6")
            playwright_api.expect(page.locator("#parley-batch-table")).to_contain_text("再见")
            job_id = page.locator("#parley-batch-job-id textarea").input_value()
            assert len(job_id) == 12
        finally:
            browser.close()


def test_batch_table_headers_and_feedback_in_chinese(app_url: str, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.csv"
    prompts.write_text("提示词,答案\n你好,ok\n再见,ok\n", encoding="utf-8")

    with playwright_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            page = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 1400}).new_page()
            page.goto(app_url + "/")
            page.get_by_role("tab", name="批量").click()

            # Start without a file says what to do instead of doing nothing.
            page.locator("#parley-batch-start").click()
            playwright_api.expect(page.locator("#parley-batch-status")).to_contain_text("请先上传提示词文件。")

            page.locator("#parley-batch-file input[type=file]").set_input_files(str(prompts))
            playwright_api.expect(page.locator("#parley-batch-parsed")).to_contain_text("已读取 2 条提示词")
            page.locator("#parley-batch-start").click()
            done = page.locator('#parley-batch-progress-text[data-state="done"]')
            playwright_api.expect(done).to_contain_text("已完成 2/2 次运行", timeout=30_000)

            # The files list fills in when the job ends, without a click on Download.
            playwright_api.expect(page.locator("#parley-batch-files")).to_contain_text(".jsonl")
            playwright_api.expect(page.locator("#parley-batch-jobs input")).to_have_value(re.compile(r"· 已完成$"))
            table = page.locator("#parley-batch-table")
            playwright_api.expect(table).to_contain_text("再见")
            table.scroll_into_view_if_needed()
            page.screenshot(path=str(tmp_path / "batch-table.png"), full_page=True)

            # Each header reads on one line: a squeezed column would wrap it to one character per line.
            for header in ("温度", "符合预期", "耗时（秒）", "实际模型"):
                cell = table.locator("th", has_text=header).first
                playwright_api.expect(cell).to_be_visible()
                box = cell.locator("span, div").filter(has_text=header).last.bounding_box()
                assert box is not None
                assert box["height"] < 2 * box["width"], f"{header} header is squeezed: {box}"
            playwright_api.expect(table).to_contain_text("成功")
        finally:
            browser.close()
