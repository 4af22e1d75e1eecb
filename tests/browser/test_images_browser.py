"""Images in headless Chromium: the chat input keeps an image attached across turns; the Image tab reports and hands over."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.browser.support import open_page
from tests.ui_support import serve_parley

pytestmark = pytest.mark.browser

# Each scripted image costs this many prompt tokens, so the token count in the
# status line tells whether the image was in the request.
IMAGE_TOKENS = 85


@pytest.fixture(scope="module")
def app_url() -> Iterator[str]:
    raw: dict[str, Any] = {
        "backends": [
            {
                "name": "scripted",
                "kind": "scripted",
                "image_tokens": IMAGE_TOKENS,
                "models": [{"name": "seer", "vision": True}, {"name": "echo"}],
                "replies": [{"match": "colour", "text": "It is mostly red."}, {"text": "Still here."}],
            }
        ],
        "ui": {"default_model": "seer"},
    }
    with serve_parley(raw) as url:
        yield url


@pytest.fixture
def page(app_url: str) -> Iterator[Any]:
    with open_page(app_url + "/", locale="en-US") as opened:
        yield opened


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    """A red photo stored sideways (EXIF orientation 6) with a GPS tag."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif.get_ifd(0x8825)[1] = "N"
    path = tmp_path / "red.jpg"
    Image.new("RGB", (300, 600), (220, 20, 20)).save(path, "JPEG", exif=exif.tobytes())
    return path


def prompt_tokens(status: str) -> int:
    """Read N from "… N prompt + M completion tokens" in a status line."""
    before = status.split(" prompt + ")[0]
    return int(before.split()[-1])


def test_chat_image_stays_attached_across_turns(page: Any, photo: Path) -> None:
    expect = pytest.importorskip("playwright.sync_api").expect
    chatbot = page.locator("#parley-chatbot")

    page.locator("#parley-input input[type=file]").set_input_files(str(photo))
    expect(page.locator("#parley-input img")).to_have_count(1, timeout=10_000)
    page.locator("#parley-input textarea").fill("what colour is it?")
    page.locator("#parley-input button[data-testid=submit-button]").click()

    expect(chatbot).to_contain_text("It is mostly red.", timeout=20_000)
    expect(chatbot).to_contain_text("completion tokens", timeout=20_000)
    first_status = chatbot.inner_text()
    assert prompt_tokens(first_status.split("seer · scripted")[-1]) >= IMAGE_TOKENS
    # The thumbnail shows in the user's message.
    expect(page.locator("[data-testid=user] img")).to_have_count(1)

    page.locator("#parley-input textarea").fill("and now?")
    page.locator("#parley-input textarea").press("Enter")

    expect(chatbot).to_contain_text("Still here.", timeout=20_000)
    expect(page.locator("[data-testid=user]").last).to_contain_text("and now?")
    # The image stays with its message, and the second request still carried it.
    expect(page.locator("[data-testid=user] img")).to_have_count(1)
    statuses = chatbot.inner_text().split("seer · scripted")
    assert prompt_tokens(statuses[-1]) >= IMAGE_TOKENS


def test_image_tab_reports_asks_and_hands_over(page: Any, photo: Path) -> None:
    expect = pytest.importorskip("playwright.sync_api").expect

    page.locator("#parley-tab-image-button").click()
    page.locator("#parley-image-upload input[type=file]").set_input_files(str(photo))

    report = page.locator("#parley-image-report")
    expect(report).to_contain_text("Turned upright (EXIF orientation 6).", timeout=20_000)
    expect(report).to_contain_text("GPS location")
    expect(report).to_contain_text("600 × 300")
    expect(page.locator("#parley-image-preview img")).to_have_count(1, timeout=10_000)

    page.locator("#parley-image-question textarea").fill("which colour?")
    page.locator("#parley-image-ask").click()
    expect(page.locator("#parley-image-answer")).to_contain_text("It is mostly red.", timeout=20_000)

    page.locator("#parley-image-send").click()
    expect(page.locator("#parley-input textarea")).to_have_value("which colour?", timeout=10_000)
    expect(page.locator("#parley-input img")).to_have_count(1)
    expect(page.locator("#parley-chatbot")).to_be_visible()
