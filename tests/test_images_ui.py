"""The Image tab's handlers and report, against a router over the real scripted backend."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from PIL import Image

from backends.pipeline import build_router
from backends.registry import BackendContext
from config import parse_config
from multimodal.image_service import ImageService
from multimodal.images import ImageLimits, prepare_image
from tests.test_images import gif_with_frame_over_canvas, marked_upright, noisy_photo, png_header_only
from ui.chat_tab import ChatHandlers
from ui.image_tab import ImageHandlers, render_report
from ui.services import UIServices
from ui.settings import UISettings

SCRIPTED: dict[str, Any] = {
    "name": "script",
    "kind": "scripted",
    "models": [{"name": "seer", "vision": True}, {"name": "echo"}, {"name": "blind", "fallback": ["seer"]}],
    "replies": [{"match": "describe", "text": "A red corner on blue."}],
}


@pytest.fixture
def handlers() -> Iterator[ImageHandlers]:
    raw = {
        "backends": [SCRIPTED],
        "resilience": {"cache": {"enabled": False}, "retry": {"max_retries": 0}, "fallback": {"canned_reply": False}},
    }
    config = parse_config(raw, source="test config", env={})
    router = build_router(config, BackendContext())
    images = ImageService.from_config(config, router)
    services = UIServices(router=router, settings=UISettings(stream_interval_ms=20), image_pipeline=images)
    yield ImageHandlers(services, images)
    images.close()


def request(language: str = "en") -> gr.Request:
    return gr.Request(headers={"accept-language": language}, session_hash="image-session")


def gps_jpeg(path: Path) -> Path:
    exif = Image.Exif()
    exif[0x0112] = 6
    exif.get_ifd(0x8825)[1] = "N"
    marked_upright((800, 400)).transpose(Image.Transpose.ROTATE_90).save(path, "JPEG", exif=exif.tobytes())
    return path


async def collect(updates: AsyncIterator[Any]) -> list[Any]:
    return [update async for update in updates]


def answer_text(history: list[dict[str, Any]]) -> str:
    answers = [m for m in history if m["role"] == "assistant" and not (m.get("metadata") or {}).get("title")]
    return str(answers[-1]["content"][0]["text"]) if answers else ""


async def test_preview_shows_exact_sent_bytes(handlers: ImageHandlers, tmp_path: Path) -> None:
    path = gps_jpeg(tmp_path / "holiday.jpg")

    preview, report, prepared = await handlers.prepare(str(path), "seer", request())

    assert prepared is not None
    assert preview is not None
    assert Path(preview).read_bytes() == prepared.part.data
    assert Image.open(io.BytesIO(prepared.part.data)).size == (800, 400)
    assert "| Dimensions | 400 × 800 | 800 × 400 |" in report
    assert "Turned upright (EXIF orientation 6)." in report
    assert "GPS location" in report


async def test_report_in_chinese(handlers: ImageHandlers, tmp_path: Path) -> None:
    path = gps_jpeg(tmp_path / "holiday.jpg")

    _, report, _ = await handlers.prepare(str(path), "seer", request("zh-CN,zh;q=0.9"))

    assert "| 尺寸 | 400 × 800 | 800 × 400 |" in report
    assert "已按 EXIF 方向 6 转正。" in report
    assert "GPS 位置" in report


async def test_text_upload_is_named_in_chinese(handlers: ImageHandlers, tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("shopping list: eggs\n", encoding="utf-8")

    preview, report, prepared = await handlers.prepare(str(path), "seer", request("zh-CN"))

    assert preview is None
    assert prepared is None
    assert "这个文件是文本文件，不是图片" in report


async def test_model_limits_drive_preparation(handlers: ImageHandlers, tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    noisy_photo((4000, 3000)).save(path, "JPEG")

    _, report, prepared = await handlers.prepare(str(path), "seer", request())

    assert prepared is not None
    # The scripted models keep the default long side of 1568.
    assert max(prepared.report.final_size) <= 1568
    assert "Scaled down to fit a long side of 1568 px." in report
    assert "Decoded at 1/2 size" in report


async def test_ask_streams_answer_with_image(handlers: ImageHandlers, tmp_path: Path) -> None:
    preview, _, prepared = await handlers.prepare(str(gps_jpeg(tmp_path / "a.jpg")), "seer", request())

    updates = await collect(handlers.ask(prepared, preview, "describe it", "seer", request()))

    history = updates[-1]
    assert history[0]["role"] == "user"
    assert history[0]["content"][0]["file"]["path"] == preview
    assert history[0]["content"][1]["text"] == "describe it"
    assert answer_text(history) == "A red corner on blue."
    received = handlers.services.router.backends["script"]
    assert received.received[-1].messages[0].images[0].sha256 == prepared.part.sha256  # type: ignore[attr-defined]


async def test_ask_text_model_uses_vision_fallback(handlers: ImageHandlers, tmp_path: Path) -> None:
    preview, _, prepared = await handlers.prepare(str(gps_jpeg(tmp_path / "a.jpg")), "blind", request())

    updates = await collect(handlers.ask(prepared, preview, "describe it", "blind", request()))

    history = updates[-1]
    assert answer_text(history) == "A red corner on blue."
    shown = str(history)
    assert "blind cannot see images; seer answers this message instead." in shown


async def test_ask_text_model_without_fallback_fails_clearly(handlers: ImageHandlers, tmp_path: Path) -> None:
    preview, _, prepared = await handlers.prepare(str(gps_jpeg(tmp_path / "a.jpg")), "echo", request())

    updates = await collect(handlers.ask(prepared, preview, "describe it", "echo", request()))

    shown = str(updates[-1])
    assert "Model echo cannot see images. Models that can: seer. Pick one of them, or remove the image." in shown
    assert answer_text(updates[-1]) == ""


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "Model echo cannot see images, and no configured model can. Remove the image or add a vision model to the config."),
        ("zh-CN", "模型 echo 无法识别图片，已配置的模型也都无法识别图片。请移除图片，或在配置中添加一个支持图片的模型。"),
    ],
)
async def test_image_without_any_vision_model_says_to_add_one(tmp_path: Path, language: str, expected: str) -> None:
    raw = {
        "backends": [{"name": "script", "kind": "scripted", "models": [{"name": "echo"}]}],
        "resilience": {"cache": {"enabled": False}, "retry": {"max_retries": 0}, "fallback": {"canned_reply": False}},
    }
    config = parse_config(raw, source="test config", env={})
    router = build_router(config, BackendContext())
    images = ImageService.from_config(config, router)
    services = UIServices(router=router, settings=UISettings(stream_interval_ms=20), image_pipeline=images)
    blind = ImageHandlers(services, images)
    try:
        preview, _, prepared = await blind.prepare(str(gps_jpeg(tmp_path / "a.jpg")), "echo", request(language))
        updates = await collect(blind.ask(prepared, preview, "describe it", "echo", request(language)))
    finally:
        images.close()

    shown = str(updates[-1])
    assert expected in shown
    assert "none configured" not in shown
    assert answer_text(updates[-1]) == ""


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "The image has 400.0 megapixels; the limit is 50.0 megapixels."),
        ("zh-CN", "图片有 400.0 百万像素，超过了 50.0 百万像素的上限。"),
    ],
)
async def test_pixel_bomb_report_names_real_size(
    handlers: ImageHandlers, tmp_path: Path, language: str, expected: str
) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(20000, 20000))

    preview, report, prepared = await handlers.prepare(str(path), "seer", request(language))

    assert preview is None
    assert prepared is None
    assert expected in report
    assert "179.0" not in report


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "The image has more than 179.0 megapixels; the limit is 50.0 megapixels (images.max_pixels)."),
        ("zh-CN", "图片超过 179.0 百万像素，超过了 50.0 百万像素的上限（images.max_pixels）。"),
    ],
)
async def test_late_pixel_bomb_report_names_limit(
    handlers: ImageHandlers, tmp_path: Path, language: str, expected: str
) -> None:
    path = tmp_path / "frame.gif"
    path.write_bytes(gif_with_frame_over_canvas(20000, 20000))

    _, report, prepared = await handlers.prepare(str(path), "seer", request(language))

    assert prepared is None
    assert expected in report


async def test_ask_without_image_asks_for_one(handlers: ImageHandlers) -> None:
    with pytest.raises(gr.Error) as caught:
        await collect(handlers.ask(None, None, "describe it", "seer", request()))

    assert "Upload an image first." in str(caught.value)


def test_report_lists_transparency_and_frames() -> None:
    frames = [Image.new("RGBA", (40, 40), (255, 0, 0, 0)), Image.new("RGBA", (40, 40), (0, 255, 0, 255))]
    frames[0].paste((255, 0, 0, 255), (0, 0, 20, 40))
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], disposal=2)
    prepared = prepare_image(buffer.getvalue(), ImageLimits())

    report = render_report(prepared.report, 1568, "en")

    assert "Animated image: only the first frame is sent." in report
    assert "Transparency kept, so the image is sent as PNG." in report
    assert "Colour mode P converted to RGBA." in report


async def test_chat_survives_vanished_history_image(handlers: ImageHandlers, tmp_path: Path) -> None:
    chat = ChatHandlers(handlers.services)
    path = gps_jpeg(tmp_path / "gone.jpg")
    history: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "file", "file": {"path": str(path), "mime_type": "image/jpeg"}}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A red corner."}]},
    ]
    path.unlink()

    updates = await collect(chat.chat({"text": "and the rest?", "files": []}, history, "seer", "", 0.7, 1.0, 256, request()))

    final, _ = updates[-1]
    assert answer_text(final) == "and the rest?"
    backend = handlers.services.router.backends["script"]
    first = backend.received[-1].messages[0]  # type: ignore[attr-defined]
    assert first.images == ()
    assert "[image omitted: the file could not be read]" in first.text_content
    assert "could not be read and were left out" in str(final)
