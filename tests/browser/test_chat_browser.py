"""The Chat tab in headless Chromium (Debian's /usr/bin/chromium) with a Chinese browser locale."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator

import pytest

from tests.browser.support import CHROMIUM, CHROMIUM_ARGS, open_page, send_message
from tests.ui_support import scripted_config, serve_parley

pytestmark = pytest.mark.browser

HOSTILE_PROMPT = '<b>粗体</b><img src=x onerror="window.__parleyXss=1"><script>window.__parleyXss=2</script>'
HOSTILE_REPLY = 'Reply with <img src=y onerror="window.__parleyXss=3"> and <script>window.__parleyXss=4</script> as text.'
SLOW_REPLY = " ".join(f"词{i}" for i in range(400))


@pytest.fixture(scope="module")
def app_url() -> Iterator[str]:
    raw = scripted_config(
        replies=[
            {"match": "慢", "text": SLOW_REPLY},
            {"text": HOSTILE_REPLY},
        ],
        chunk_delay=0.03,
    )
    with serve_parley(raw) as url:
        yield url


@pytest.fixture
def page(app_url: str) -> Iterator[object]:
    with open_page(app_url + "/", locale="zh-CN") as page:
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.dialogs = dialogs
        yield page


def visible(text: str) -> str:
    return text.replace("\u2060", "")


def test_chat_streams_reply_in_chinese_and_renders_html_as_text(page: object) -> None:
    expect = pytest.importorskip("playwright.sync_api").expect
    chatbot = page.locator("#parley-chatbot")  # type: ignore[attr-defined]

    # Labels follow the browser language.
    expect(page.locator("#parley-stop")).to_have_text("停止")  # type: ignore[attr-defined]

    send_message(page, HOSTILE_PROMPT)

    expect(chatbot).to_contain_text("as text.", timeout=20_000)
    expect(chatbot).to_contain_text("首字", timeout=20_000)
    expect(chatbot).to_contain_text("scripted-echo · scripted")

    # HTML shows as the characters typed, and nothing in it ran.
    # The word joiner that breaks each tag is invisible; drop it to compare what users see.
    user_text = visible(page.locator("[data-testid=user]").last.inner_text())  # type: ignore[attr-defined]
    assert "<b>粗体</b>" in user_text
    assert '<img src=x onerror="window.__parleyXss=1">' in user_text
    bot_text = visible(chatbot.inner_text())
    assert '<img src=y onerror="window.__parleyXss=3">' in bot_text
    assert "<script>window.__parleyXss=4</script>" in bot_text
    assert chatbot.locator("img[src=x], img[src=y], script, b").count() == 0
    assert page.evaluate("window.__parleyXss === undefined")  # type: ignore[attr-defined]
    assert page.dialogs == []  # type: ignore[attr-defined]


def test_stop_keeps_partial_reply_marked_stopped(page: object) -> None:
    expect = pytest.importorskip("playwright.sync_api").expect
    chatbot = page.locator("#parley-chatbot")  # type: ignore[attr-defined]

    send_message(page, "请慢慢说")
    expect(chatbot).to_contain_text("词5 ", timeout=20_000)
    page.locator("#parley-stop").click()  # type: ignore[attr-defined]

    expect(chatbot).to_contain_text("已停止", timeout=10_000)
    text_at_stop = chatbot.inner_text()
    page.wait_for_timeout(500)  # type: ignore[attr-defined]

    # The partial reply stays, stops growing, and the user's message is kept.
    assert len(re.findall(r"词\d+", chatbot.inner_text())) == len(re.findall(r"词\d+", text_at_stop))
    assert "词5 " in text_at_stop
    assert "词399" not in text_at_stop
    assert "请慢慢说" in page.locator("[data-testid=user]").last.inner_text()  # type: ignore[attr-defined]


def test_edit_box_shows_text_as_typed_and_resends(page: object) -> None:
    expect = pytest.importorskip("playwright.sync_api").expect
    chatbot = page.locator("#parley-chatbot")  # type: ignore[attr-defined]
    send_message(page, "问题 <b>一</b>")
    expect(chatbot).to_contain_text("首字", timeout=20_000)

    chatbot.locator("button[aria-label=Edit], button[aria-label=编辑]").last.click()
    editor = chatbot.locator("textarea")
    assert visible(editor.input_value()) == "问题 <b>一</b>"
    editor.fill(editor.input_value() + " <i>二</i>")
    chatbot.locator("button[aria-label=Submit], button[aria-label=发送]").last.click()

    # The browser first shows the edit as typed (sanitized); the server's escaped version replaces it.
    expect(page.locator("[data-testid=user]").last).to_contain_text(re.compile("<\u2060?i>二"), timeout=20_000)  # type: ignore[attr-defined]
    user_text = visible(page.locator("[data-testid=user]").last.inner_text())  # type: ignore[attr-defined]
    assert "问题 <b>一</b> <i>二</i>" in user_text
    assert chatbot.locator("b, i").count() == 0


def test_over_limit_paste_is_refused_and_kept(page: object) -> None:
    expect = pytest.importorskip("playwright.sync_api").expect
    box = page.locator("#parley-input textarea")  # type: ignore[attr-defined]
    pasted = "长" * 200_001

    box.fill(pasted)
    box.press("Enter")

    # The error names the limit in Chinese; the text stays in the box and nothing is sent.
    expect(page.get_by_text("200000 个字符的上限")).to_be_visible(timeout=20_000)  # type: ignore[attr-defined]
    assert len(box.input_value()) == 200_001
    assert page.locator("[data-testid=user]").count() == 0  # type: ignore[attr-defined]


def test_every_chinese_locale_gets_chinese_labels(app_url: str) -> None:
    if not shutil.which(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed; run `make system-packages`")
    playwright_api = pytest.importorskip("playwright.sync_api")
    expected = {"zh": "停止", "zh-CN": "停止", "zh-Hans": "停止", "zh-Hans-CN": "停止", "en-US": "Stop"}
    seen: dict[str, str] = {}
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for locale, label in expected.items():
            context = browser.new_context(locale=locale)
            page = context.new_page()
            page.goto(app_url + "/", wait_until="load")
            playwright_api.expect(page.locator("#parley-stop")).to_have_text(label, timeout=30_000)
            seen[locale] = page.locator("#parley-stop").inner_text()
            context.close()
        browser.close()

    assert seen == expected
