"""Speech input in the chat textbox: typing never starts a queued event."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest

from backends.pipeline import build_router
from backends.registry import BackendContext
from config import parse_config
from multimodal.audio_settings import AudioSettings
from multimodal.transcribe import Transcriber
from ui.root import build_blocks
from ui.services import UIServices
from ui.voice_tab import require_audio


def test_text_without_audio_stops_chain_silently() -> None:
    with pytest.raises(gr.Error) as caught:
        require_audio({"text": "hello", "files": []})

    assert caught.value.visible is False
    assert caught.value.print_exception is False


def test_image_without_audio_stops_chain() -> None:
    with pytest.raises(gr.Error):
        require_audio({"text": "", "files": [{"path": "/tmp/upload/photo.png"}]})


def test_audio_file_lets_chain_run() -> None:
    assert require_audio({"text": "note:", "files": [{"path": "/tmp/upload/clip.webm"}, "/tmp/upload/photo.png"]}) is None


def build_page(cache_dir: Path) -> tuple[gr.Blocks, UIServices]:
    raw = {"backends": [{"name": "script", "kind": "scripted", "models": [{"name": "echo"}]}]}
    config = parse_config(raw, source="test config", env={})
    # The transcriber is never started: building the page needs only its presence.
    transcriber = Transcriber(AudioSettings(cache_dir=cache_dir))
    services = UIServices(router=build_router(config, BackendContext()), settings=config.ui, transcriber=transcriber)
    return build_blocks(services), services


def test_chat_box_change_skips_queue(tmp_path: Path) -> None:
    blocks, services = build_page(tmp_path)

    textbox_id = services.chat_tab.textbox._id
    on_change = [fn for fn in blocks.fns.values() if (textbox_id, "change") in fn.targets]
    assert [fn.name for fn in on_change] == ["require_audio"]
    assert on_change[0].queue is False
    transcribe = [fn for fn in blocks.fns.values() if fn.name == "chat_audio"]
    assert len(transcribe) == 1
    assert transcribe[0].queue is not False
    assert transcribe[0].trigger_after == on_change[0]._id
    assert transcribe[0].trigger_only_on_success is True


def test_voice_triggers_share_one_listener(tmp_path: Path) -> None:
    blocks, _ = build_page(tmp_path)

    listeners = [fn for fn in blocks.fns.values() if fn.name == "transcribe"]

    assert len(listeners) == 1
    assert sorted(event for _, event in listeners[0].targets) == ["click", "stop_recording", "upload"]
    assert listeners[0].trigger_mode == "once"
    assert listeners[0].api_name == "transcribe"
