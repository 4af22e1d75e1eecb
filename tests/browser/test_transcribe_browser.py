"""Speech input in headless Chromium: the Voice tab and recordings dropped into the chat box."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from multimodal.transcript_text import to_simplified
from tests.browser.support import CHROMIUM, CHROMIUM_ARGS
from tests.speech_support import EN_JFK, REFERENCES, ZH_CLIP, char_error_rate, error_rate
from tests.ui_support import scripted_config, serve_parley

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TRANSCRIBE_TIMEOUT_MS = 180_000


@pytest.fixture(scope="module")
def app_url(speech_cache_dir: Path) -> Iterator[str]:
    raw: dict[str, Any] = {**scripted_config(replies=[{"text": "收到。"}]), "audio": {"cache_dir": str(speech_cache_dir)}}
    with serve_parley(raw) as url:
        yield url


@pytest.fixture
def page(app_url: str) -> Iterator[Any]:
    if not shutil.which(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed; run `make system-packages`")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(locale="zh-CN")
        page = context.new_page()
        page.goto(app_url + "/", wait_until="domcontentloaded", timeout=120_000)
        page.locator("#parley-input textarea").wait_for(timeout=120_000)
        yield page
        context.close()
        browser.close()


def chat_text(page: Any) -> str:
    return str(page.locator("#parley-input textarea").input_value())


def test_chat_box_offers_microphone(page: Any) -> None:
    assert page.locator("#parley-input [data-testid=microphone-button]").count() == 1


def test_recording_in_chat_box_becomes_text(page: Any) -> None:
    page.locator("#parley-input input[type=file]").set_input_files(str(ZH_CLIP))

    page.wait_for_function(
        "() => document.querySelector('#parley-input textarea').value.length > 0", timeout=TRANSCRIBE_TIMEOUT_MS
    )
    text = chat_text(page)
    assert to_simplified(text) == text
    assert char_error_rate(REFERENCES[ZH_CLIP], text) <= 0.2
    # The recording itself is gone from the box; only the text is sent.
    assert page.locator("#parley-input audio").count() == 0


def test_chat_box_takes_flac_after_typing(page: Any) -> None:
    # Typing fires the box's change event first, and every event that updates
    # the box makes Gradio rebuild it server-side: audio must survive that.
    textarea = page.locator("#parley-input textarea")
    textarea.fill("Quote:")
    page.wait_for_timeout(1000)

    with page.expect_file_chooser() as chooser:
        page.locator("#parley-input [data-testid=upload-button]").click()
    chooser.value.set_files(str(EN_JFK))

    page.wait_for_function(
        "() => document.querySelector('#parley-input textarea').value.length > 'Quote:'.length",
        timeout=TRANSCRIBE_TIMEOUT_MS,
    )
    text = chat_text(page)
    assert text.startswith("Quote:")
    assert error_rate(EN_JFK, text.removeprefix("Quote:")) <= 0.2
    assert page.locator(".toast-body", has_text="Invalid file type").count() == 0
    assert page.locator("#parley-input audio").count() == 0


def test_voice_tab_transcribes_and_sends_to_chat(page: Any) -> None:
    page.locator("#parley-tab-voice-button").click()
    # The recorder is the first source; switch the component to upload.
    page.locator("#parley-voice-audio button[aria-label='Upload file']").click()
    page.locator("#parley-voice-audio input[type=file]").set_input_files(str(ZH_CLIP))

    page.wait_for_function(
        "() => document.querySelector('#parley-voice-transcript textarea').value.length > 0",
        timeout=TRANSCRIBE_TIMEOUT_MS,
    )
    transcript = str(page.locator("#parley-voice-transcript textarea").input_value())
    assert char_error_rate(REFERENCES[ZH_CLIP], transcript) <= 0.2
    assert "语言：zh" in page.locator("#parley-voice-status").inner_text()

    page.locator("#parley-voice-send").click()
    page.wait_for_function("() => document.querySelector('#parley-input textarea').value.length > 0", timeout=10_000)
    assert chat_text(page) == transcript


def test_autosend_sends_chat_recording(page: Any) -> None:
    page.locator("#parley-tab-voice-button").click()
    page.locator("#parley-voice-autosend input[type=checkbox]").check()
    page.locator("#parley-tab-chat-button").click()

    page.locator("#parley-input input[type=file]").set_input_files(str(ZH_CLIP))

    user = page.locator("#parley-chatbot [data-testid=user]").first
    user.wait_for(timeout=TRANSCRIBE_TIMEOUT_MS)
    assert char_error_rate(REFERENCES[ZH_CLIP], user.inner_text()) <= 0.2
    page.locator("#parley-chatbot [data-testid=bot]", has_text="收到").first.wait_for(timeout=30_000)


@pytest.fixture
def page_with_fake_microphone(app_url: str) -> Iterator[Any]:
    if not shutil.which(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed; run `make system-packages`")
    playwright_api = pytest.importorskip("playwright.sync_api")
    fake_media = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *fake_media])
        context = browser.new_context(locale="zh-CN", permissions=["microphone"])
        page = context.new_page()
        page.goto(app_url + "/", wait_until="domcontentloaded", timeout=120_000)
        page.locator("#parley-input textarea").wait_for(timeout=120_000)
        yield page
        context.close()
        browser.close()


def test_microphone_recording_reaches_transcriber(page_with_fake_microphone: Any) -> None:
    # Chromium's fake microphone plays beeps, not speech: the recording must
    # arrive, decode and be rejected with the Chinese no-speech message.
    page = page_with_fake_microphone
    page.locator("#parley-tab-voice-button").click()
    page.locator("#parley-voice-audio button.record-button").click()
    page.wait_for_timeout(3000)
    page.locator("#parley-voice-audio button.stop-button").first.click()

    toast = page.locator(".toast-body", has_text="没有检测到语音")
    toast.wait_for(timeout=TRANSCRIBE_TIMEOUT_MS)
    assert page.locator("#parley-voice-transcript textarea").input_value() == ""


def test_recent_recording_replays_transcript(page: Any) -> None:
    page.locator("#parley-tab-voice-button").click()
    page.locator("#parley-voice-audio button[aria-label='Upload file']").click()
    page.locator("#parley-voice-audio input[type=file]").set_input_files(str(ZH_CLIP))
    page.wait_for_function(
        "() => document.querySelector('#parley-voice-transcript textarea').value.length > 0",
        timeout=TRANSCRIBE_TIMEOUT_MS,
    )
    transcript = str(page.locator("#parley-voice-transcript textarea").input_value())
    page.locator("#parley-voice-transcript textarea").fill("改过的文字")

    page.locator("#parley-voice-recent input").click()
    options = page.locator("#parley-voice-recent [data-testid=dropdown-option]")
    options.first.wait_for(timeout=10_000)
    assert options.count() == 1
    options.first.click()

    page.wait_for_function(
        "expected => document.querySelector('#parley-voice-transcript textarea').value === expected",
        arg=transcript,
        timeout=10_000,
    )
    assert page.locator("#parley-voice-audio audio").count() >= 1
