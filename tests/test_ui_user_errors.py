"""Expected input problems in the UI: a translated gr.Error that Gradio shows without printing a traceback."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import gradio as gr
import pytest

from backends.pipeline import build_router
from backends.registry import BackendContext
from config import parse_config
from multimodal.image_service import ImageService
from multimodal.transcribe import Transcriber
from ui.image_tab import ImageHandlers
from ui.services import UIServices
from ui.voice_tab import VoiceHandlers, transcribe_with_status


def request(language: str = "en") -> gr.Request:
    return gr.Request(headers={"accept-language": language}, session_hash="user-errors")


def services(**extra: Any) -> UIServices:
    raw = {"backends": [{"name": "script", "kind": "scripted", "models": [{"name": "echo"}]}]}
    router = build_router(parse_config(raw, source="test config", env={}), BackendContext())
    return UIServices(router=router, **extra)


async def test_image_question_without_image_prints_no_traceback() -> None:
    raw = {"backends": [{"name": "script", "kind": "scripted", "models": [{"name": "echo"}]}]}
    config = parse_config(raw, source="test config", env={})
    router = build_router(config, BackendContext())
    images = ImageService.from_config(config, router)
    handlers = ImageHandlers(UIServices(router=router, image_pipeline=images), images)

    try:
        with pytest.raises(gr.Error) as caught:
            [update async for update in handlers.ask(None, None, "describe it", "echo", request())]
    finally:
        images.close()

    assert "Upload an image first." in str(caught.value)
    assert caught.value.print_exception is False


async def test_voice_without_recording_prints_no_traceback() -> None:
    handlers = VoiceHandlers(services())

    with pytest.raises(gr.Error) as caught:
        [update async for update in handlers.transcribe(None, "ui", [], request("zh-CN"))]

    assert caught.value.print_exception is False
    assert caught.value.message != ""


async def test_unreadable_recording_logs_one_line_without_traceback(
    transcriber: Transcriber, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recording = tmp_path / "notes.wav"
    recording.write_bytes(b"this is not audio at all")
    caplog.set_level(logging.INFO, logger="ui.voice_tab")

    with pytest.raises(gr.Error) as caught:
        [update async for update in transcribe_with_status(transcriber, str(recording), None, "en")]

    assert caught.value.print_exception is False
    assert "The recording could not be decoded" in caught.value.message
    records = [record for record in caplog.records if record.name == "ui.voice_tab"]
    assert len(records) == 1
    assert records[0].levelno == logging.INFO
    assert records[0].exc_info is None
    assert "notes.wav" in records[0].getMessage()



async def test_chat_message_over_limit_prints_no_traceback() -> None:
    from ui.chat_tab import ChatHandlers

    handlers = ChatHandlers(UIServices(router=services().router, max_prompt_chars=10))

    with pytest.raises(gr.Error) as caught:
        chat = handlers.chat({"text": "x" * 11, "files": []}, [], "echo", "", 0.7, 1.0, 256, request())
        [update async for update in chat]

    assert caught.value.print_exception is False
    assert "11" in caught.value.message
