"""The page root: tabs, the model picker, the [ui] config section and the locale script."""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx
import pytest

from backends.errors import ConfigError
from backends.types import Capabilities, ModelInfo
from config import parse_config
from tests.ui_support import scripted_config, serve_parley
from ui.browser_locale import LOCALE_SCRIPT
from ui.chat_tab import model_choice_label
from ui.root import OTHER_EVENT_SLOTS, queue_slots
from ui.settings import UISettings


def test_model_label_shows_capability_badges() -> None:
    plain = ModelInfo(name="chat", backend="ds", upstream="deepseek-chat")
    seeing = ModelInfo(name="vl", backend="local", upstream="vl", capabilities=Capabilities(vision=True))
    thinking = ModelInfo(name="r1", backend="ds", upstream="deepseek-reasoner", capabilities=Capabilities(vision=True, reasoning=True))

    assert model_choice_label(plain) == "chat · ds"
    assert model_choice_label(seeing) == "vl · local 👁"
    assert model_choice_label(thinking) == "r1 · ds 👁🧠"


def test_ui_section_is_parsed_and_strict() -> None:
    config = parse_config({"ui": {"stream_interval_ms": 100, "concurrency_limit": 8}}, source="test", env={})

    assert config.ui.stream_interval_ms == 100
    assert config.ui.concurrency_limit == 8
    with pytest.raises(ConfigError):
        parse_config({"ui": {"stream_intervl_ms": 100}}, source="test", env={})


def test_page_lists_models_and_tabs_and_carries_locale_script() -> None:
    raw = scripted_config(models=[{"name": "scripted-echo"}, {"name": "scripted-vision", "vision": True}])
    with serve_parley(raw) as url:
        page = httpx.get(url + "/", timeout=10)
        config = httpx.get(url + "/config", timeout=10).json()

    # The locale script comes first in <head>, before Gradio's own scripts.
    assert page.status_code == 200
    assert page.text.index(LOCALE_SCRIPT.decode()) < page.text.index("<script type=\"module\"")
    assert int(page.headers["content-length"]) == len(page.content)

    picker = next(c for c in config["components"] if c.get("props", {}).get("elem_id") == "parley-model")
    assert [choice[1] for choice in picker["props"]["choices"]] == ["scripted-echo", "scripted-vision"]
    assert picker["props"]["choices"][1][0] == "scripted-vision · scripted 👁"
    assert picker["props"]["value"] == "scripted-echo"

    tab_ids = {c["props"].get("elem_id") for c in config["components"] if c.get("type") == "tabitem"}
    assert "parley-tab-chat" in tab_ids


def test_queue_slots_cover_chat_limit_and_other_tabs() -> None:
    assert queue_slots(UISettings(concurrency_limit=64)) == 64 + OTHER_EVENT_SLOTS
    assert queue_slots(UISettings(concurrency_limit=None, queue_max_size=300)) == 300 + OTHER_EVENT_SLOTS


async def _count_started_replies(url: str, users: int) -> int:
    """Join `users` chat replies, each in its own session, and count those whose processing starts.

    Every stream stays open until the count is complete: a closed stream is a
    closed tab, and Gradio would cancel that reply and free its place.
    """
    config = httpx.get(url + "/config", timeout=10).json()
    index, dependency = next((i, d) for i, d in enumerate(config["dependencies"]) if d.get("api_name") == "chat")
    started: set[str] = set()
    all_started = asyncio.Event()

    async def watch(http: httpx.AsyncClient, session: str) -> None:
        payload = {
            "data": [{"text": "hi", "files": []}, [], "scripted-echo", "", 0.7, 1.0, 64],
            "fn_index": index,
            "session_hash": session,
            "event_data": None,
            "trigger_id": dependency["targets"][0][0],
        }
        joined = await http.post(url + "/gradio_api/queue/join", json=payload)
        assert joined.status_code == 200
        async with http.stream("GET", url + "/gradio_api/queue/data", params={"session_hash": session}) as stream:
            async for line in stream.aiter_lines():
                if line.startswith("data:") and json.loads(line[5:]).get("msg") == "process_starts":
                    started.add(session)
                    if len(started) == users:
                        all_started.set()

    limits = httpx.Limits(max_connections=2 * users, max_keepalive_connections=2 * users)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        tasks = [asyncio.ensure_future(watch(http, f"user-{number}")) for number in range(users)]
        # Every reply waits a minute for its first token, so none ends and frees a place in this time.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_started.wait(), timeout=20)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return len(started)


def test_chat_limit_above_gradio_default_runs_at_once() -> None:
    # Gradio runs 40 queued events at once by default, and a chat limit of 45 must still hold.
    users = 45
    raw = scripted_config(ui={"concurrency_limit": users}, first_token_delay=60.0)
    with serve_parley(raw) as url:
        started = asyncio.run(_count_started_replies(url, users))

    assert started == users
