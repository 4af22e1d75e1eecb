"""The Chat tab's handlers against a router over the real scripted backend."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import gradio as gr
import pytest

from backends.registry import BackendContext, create_backend
from backends.router import Router
from backends.scripted import ScriptedBackend, Settings
from tests.fakes.openai_server import FakeOpenAIServer
from ui.chat_tab import ChatHandlers
from ui.history import normalize_history
from ui.services import UIServices
from ui.settings import UISettings

MODEL = "scripted-echo"
J = "\u2060"  # the word joiner that breaks tags for display


def make_handlers(*, max_prompt_chars: int = 200_000, interval_ms: int = 60, **scripted: Any) -> tuple[ChatHandlers, ScriptedBackend]:
    settings = Settings(name="scripted", kind="scripted", **scripted)
    backend = create_backend(settings, BackendContext())
    assert isinstance(backend, ScriptedBackend)
    infos = {info.name: info for info in backend.models()}
    router = Router({"scripted": backend}, {name: backend for name in infos}, infos)
    services = UIServices(router=router, settings=UISettings(stream_interval_ms=interval_ms), max_prompt_chars=max_prompt_chars)
    return ChatHandlers(services), backend


def request(language: str = "en", session: str = "session-1") -> gr.Request:
    return gr.Request(headers={"accept-language": language}, session_hash=session)


async def collect(updates: AsyncIterator[Any]) -> list[Any]:
    return [update async for update in updates]


def status_block(history: list[dict[str, Any]]) -> dict[str, Any]:
    last = history[-1]
    assert last["metadata"] and last["metadata"].get("title"), f"last message is not a status block: {last}"
    return last


def answer_text(history: list[dict[str, Any]]) -> str:
    answers = [m for m in history if m["role"] == "assistant" and not (m.get("metadata") or {}).get("title")]
    return answers[-1]["content"][0]["text"] if answers else ""


async def send(handlers: ChatHandlers, text: str, history: list[Any] | None = None, *, language: str = "en", **controls: Any) -> list[Any]:
    values = {"model": MODEL, "system_prompt": "", "temperature": 0.7, "top_p": 1.0, "max_tokens": 256, **controls}
    return await collect(
        handlers.chat({"text": text, "files": []}, history or [], values["model"], values["system_prompt"], values["temperature"], values["top_p"], values["max_tokens"], request(language))
    )


async def test_chat_streams_reply_with_stats_line() -> None:
    handlers, backend = make_handlers(replies=[{"text": "Hello there, friend.", "prompt_tokens": 7, "completion_tokens": 4}])

    updates = await send(handlers, "hi")

    history, textbox = updates[-1]
    assert textbox == {"text": "", "files": []}
    assert history[0] == {"role": "user", "content": [{"type": "text", "text": "hi"}]}
    assert answer_text(history) == "Hello there, friend."
    title = status_block(history)["metadata"]["title"]
    assert title.startswith("scripted-echo · scripted")
    assert "first token" in title
    assert "7 prompt + 4 completion tokens" in title
    assert status_block(history)["metadata"]["status"] == "done"
    assert "Served by scripted/scripted-echo" in status_block(history)["content"][0]["text"]
    assert backend.received[-1].messages[-1].text_content == "hi"


async def test_chat_stats_line_in_chinese_for_zh_browser() -> None:
    handlers, _ = make_handlers(replies=[{"text": "你好"}])

    history, _ = (await send(handlers, "hi", language="zh-CN,zh;q=0.9"))[-1]

    title = status_block(history)["metadata"]["title"]
    assert "首字" in title
    assert "毫秒" in title


async def test_chat_sends_history_system_prompt_and_sampling() -> None:
    handlers, backend = make_handlers()
    first, _ = (await send(handlers, "one"))[-1]

    await send(handlers, "two", first, system_prompt="Be brief.", temperature=0.2, top_p=0.5, max_tokens=42)

    sent = backend.received[-1]
    assert [(m.role, m.text_content) for m in sent.messages] == [("system", "Be brief."), ("user", "one"), ("assistant", "one"), ("user", "two")]
    assert sent.params.temperature == 0.2
    assert sent.params.top_p == 0.5
    assert sent.params.max_tokens == 42
    assert sent.bypass_cache is False


async def test_reasoning_goes_to_thinking_block_not_answer() -> None:
    handlers, backend = make_handlers(replies=[{"text": "The answer is 4.", "reasoning": "2 plus 2 is 4"}])
    first, _ = (await send(handlers, "2+2?"))[-1]

    thinking = [m for m in first if (m.get("metadata") or {}).get("title") == "Thinking"]
    assert len(thinking) == 1
    assert thinking[0]["content"][0]["text"] == "2 plus 2 is 4"
    assert thinking[0]["metadata"]["status"] == "done"
    assert answer_text(first) == "The answer is 4."

    # Reasoning is shown, never sent back to the model.
    await send(handlers, "and 3+3?", first)
    assert [m.text_content for m in backend.received[-1].messages] == ["2+2?", "The answer is 4.", "and 3+3?"]


async def test_think_tags_in_text_become_thinking_block() -> None:
    handlers, _ = make_handlers(replies=[{"text": "<think>let me see</think>Six."}])

    history, _ = (await send(handlers, "3+3?"))[-1]

    thinking = [m for m in history if (m.get("metadata") or {}).get("title") == "Thinking"]
    assert thinking[0]["content"][0]["text"] == "let me see"
    assert answer_text(history) == "Six."


async def test_html_in_prompt_and_reply_is_escaped_and_sent_unescaped() -> None:
    handlers, backend = make_handlers(replies=[{"text": "Try <img src=x onerror=alert(1)> and `<b>`"}])

    history, _ = (await send(handlers, "<script>alert(1)</script>"))[-1]

    assert history[0]["content"][0]["text"] == f"<{J}script>alert(1)<{J}/script>"
    assert answer_text(history) == f"Try <{J}img src=x onerror=alert(1)> and `<b>`"

    await send(handlers, "again", history)
    assert [m.text_content for m in backend.received[-1].messages[:2]] == [
        "<script>alert(1)</script>",
        "Try <img src=x onerror=alert(1)> and `<b>`",
    ]


async def test_empty_message_sends_nothing() -> None:
    handlers, backend = make_handlers()

    updates = await send(handlers, "   \n ")

    assert len(updates) == 1
    assert updates[0][0] == []
    assert backend.received == []


async def test_message_over_limit_is_rejected_with_limit_named() -> None:
    handlers, backend = make_handlers(max_prompt_chars=100)

    with pytest.raises(gr.Error) as raised:
        await send(handlers, "x" * 101)

    assert "101" in raised.value.message
    assert "100" in raised.value.message
    assert backend.received == []


async def test_message_over_limit_is_rejected_in_chinese() -> None:
    handlers, _ = make_handlers(max_prompt_chars=10)

    with pytest.raises(gr.Error) as raised:
        await send(handlers, "x" * 11, language="zh-CN")

    assert "上限" in raised.value.message


async def test_failure_keeps_user_message_and_partial_text() -> None:
    handlers, _ = make_handlers(replies=[{"text": "one two three four", "error": "overloaded", "error_after_chunks": 2}])

    history, _ = (await send(handlers, "hello"))[-1]

    assert history[0]["content"][0]["text"] == "hello"
    assert answer_text(history) == "one two "
    title = status_block(history)["metadata"]["title"]
    assert title.startswith("Failed: scripted/scripted-echo: The model server is busy or failing.")
    assert "pick another model" in title


async def test_failure_message_is_translated() -> None:
    handlers, _ = make_handlers(replies=[{"text": "x", "error": "context_too_long"}])

    history, _ = (await send(handlers, "hello", language="zh-CN"))[-1]

    title = status_block(history)["metadata"]["title"]
    assert title.startswith("失败：")
    assert "上下文" in title


async def test_unknown_model_fails_with_configured_models_listed() -> None:
    handlers, _ = make_handlers()

    history, _ = (await send(handlers, "hello", model="gpt-nope"))[-1]

    assert history[0]["content"][0]["text"] == "hello"
    assert "scripted-echo" in status_block(history)["metadata"]["title"]


async def test_updates_are_paced_for_fast_streams() -> None:
    text = " ".join(f"w{i}" for i in range(300))
    handlers, _ = make_handlers(replies=[{"text": text}], chunk_delay=0.001, interval_ms=60)

    updates = await send(handlers, "go", max_tokens=1024)

    # 300 tokens at about 1 ms each take at least 0.3 s: about 5 to 20 updates
    # at 60 ms, never one per token.
    assert len(updates) < 60
    assert answer_text(updates[-1][0]) == text


async def test_first_update_carries_first_token() -> None:
    handlers, _ = make_handlers(replies=[{"text": "quick answer"}], interval_ms=60)

    updates = await send(handlers, "go")

    # No update with only the waiting state comes before a token that is already there.
    first, _ = updates[0]
    assert answer_text(first) != ""
    assert first[0]["content"][0]["text"] == "go"


async def test_slow_first_token_shows_waiting_state_first() -> None:
    handlers, _ = make_handlers(replies=[{"text": "late answer"}], first_token_delay=0.5, interval_ms=20)

    updates = await send(handlers, "go")

    first, _ = updates[0]
    assert first[0]["content"][0]["text"] == "go"
    assert answer_text(first) == ""
    assert status_block(first)["metadata"] == {"title": "Waiting for scripted-echo…", "status": "pending"}
    assert answer_text(updates[-1][0]) == "late answer"


async def test_update_budget_spaces_updates_of_replies() -> None:
    text = " ".join(f"w{i}" for i in range(100))
    handlers, _ = make_handlers(replies=[{"text": text}], chunk_delay=0.005, interval_ms=20)
    handlers.load.max_updates_per_second = 0.1

    # Replies sharing 0.1 updates per second wait at least 10 s between updates,
    # far longer than 100 tokens take: one update with the first token, then the end.
    results = await asyncio.gather(*(send(handlers, f"go {number}") for number in range(4)))

    for updates in results:
        assert len(updates) == 2
        assert answer_text(updates[-1][0]) == text
    assert handlers.load.active == 0


async def test_reply_cut_at_max_tokens_says_so() -> None:
    handlers, _ = make_handlers(replies=[{"text": "one two three four five"}])

    history, _ = (await send(handlers, "go", max_tokens=2))[-1]

    assert answer_text(history) == "one two "
    assert status_block(history)["metadata"]["title"].startswith("Cut off at the max tokens limit · ")


async def test_stop_closes_stream_and_marks_reply_stopped() -> None:
    handlers, backend = make_handlers(replies=[{"text": " ".join(["tok"] * 500)}], chunk_delay=0.02)
    seen: list[Any] = []

    async def consume() -> None:
        updates = handlers.chat({"text": "long", "files": []}, [], MODEL, "", 0.7, 1.0, 1024, request())
        async with contextlib.aclosing(updates):
            async for update in updates:
                seen.append(update)

    task = asyncio.create_task(consume())
    while backend.in_flight == 0 or len(seen) < 3:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert backend.in_flight == 0
    stopped = handlers.mark_stopped(seen[-1][0], request())
    title = status_block(stopped)["metadata"]["title"]
    assert title.startswith("Stopped · scripted-echo")
    assert "tok" in answer_text(stopped)
    assert stopped[0]["content"][0]["text"] == "long"


async def test_closing_handler_releases_upstream() -> None:
    handlers, backend = make_handlers(replies=[{"text": " ".join(["tok"] * 500)}], chunk_delay=0.02)
    updates = handlers.chat({"text": "long", "files": []}, [], MODEL, "", 0.7, 1.0, 1024, request())

    # A closed tab: Gradio stops iterating and closes the generator between yields.
    for _ in range(3):
        await anext(updates)
    assert backend.in_flight == 1
    await updates.aclose()

    assert backend.in_flight == 0


async def test_regenerate_replaces_last_reply_and_bypasses_cache() -> None:
    handlers, backend = make_handlers(replies=[{"text": "first"}, {"text": "second"}])
    history, _ = (await send(handlers, "q"))[-1]

    updates = await collect(handlers.regenerate(history, MODEL, "", 0.7, 1.0, 256, request()))

    regenerated = updates[-1]
    assert answer_text(regenerated) == "second"
    assert [m["role"] for m in regenerated if not (m.get("metadata") or {}).get("title")] == ["user", "assistant"]
    assert backend.received[-1].bypass_cache is True


async def test_edit_resends_edited_message() -> None:
    handlers, backend = make_handlers()
    history, _ = (await send(handlers, "old question"))[-1]
    edit = gr.EditData(None, {"index": 0, "value": "new question", "previous_value": "old question"})

    updates = await collect(handlers.edit(history, MODEL, "", 0.7, 1.0, 256, edit, request()))

    assert updates[-1][0]["content"][0]["text"] == "new question"
    assert answer_text(updates[-1]) == "new question"
    assert [m.text_content for m in backend.received[-1].messages] == ["new question"]


async def test_edit_escapes_typed_html() -> None:
    handlers, backend = make_handlers()
    history, _ = (await send(handlers, "see <b>"))[-1]
    # The edit box shows the displayed text (joiner kept) plus what the user typed.
    edit = gr.EditData(None, {"index": 0, "value": f"see <{J}b> and <i>", "previous_value": f"see <{J}b>"})

    updates = await collect(handlers.edit(history, MODEL, "", 0.7, 1.0, 256, edit, request()))

    assert updates[-1][0]["content"][0]["text"] == f"see <{J}b> and <{J}i>"
    assert backend.received[-1].messages[-1].text_content == "see <b> and <i>"


async def test_undo_removes_exchange_and_restores_text() -> None:
    handlers, _ = make_handlers()
    history, _ = (await send(handlers, "a <b> c"))[-1]
    history, _ = (await send(handlers, "second", history))[-1]
    index = max(i for i, m in enumerate(history) if m["role"] == "user")

    remaining, restored = handlers.undo(history, gr.UndoData(None, {"index": index, "value": "second"}))

    assert restored == {"text": "second", "files": []}
    assert [turn.text for turn in normalize_history(remaining)] == ["a <b> c", "a <b> c"]


def test_history_normalizer_takes_gradio_client_forms() -> None:
    history = [
        {"role": "user", "content": "plain"},
        {"role": "assistant", "content": ["bare ", "strings"]},
        {"role": "user", "content": [{"path": "/tmp/cat.png", "mime_type": "image/png"}, "look"]},
        {"role": "assistant", "content": [{"type": "text", "text": "thought"}], "metadata": {"title": "Thinking"}},
        {"role": "user", "content": [{"type": "file", "file": {"path": "/tmp/dog.png"}}, {"type": "text", "text": f"a <{J}b>"}]},
    ]

    turns = normalize_history(history)

    assert [(t.role, t.text) for t in turns] == [("user", "plain"), ("assistant", "bare strings"), ("user", "look"), ("user", "a <b>")]
    assert [ref.path for ref in turns[2].files] == ["/tmp/cat.png"]
    assert turns[2].files[0].mime == "image/png"
    assert [ref.path for ref in turns[3].files] == ["/tmp/dog.png"]


async def test_image_without_pipeline_is_rejected() -> None:
    handlers, backend = make_handlers()

    with pytest.raises(gr.Error) as raised:
        await collect(handlers.chat({"text": "see", "files": ["/tmp/cat.png"]}, [], MODEL, "", 0.7, 1.0, 256, request()))

    assert "Image tab" in raised.value.message
    assert backend.received == []


def make_image_handlers() -> tuple[ChatHandlers, ScriptedBackend]:
    from backends.pipeline import build_router
    from config import parse_config
    from multimodal.image_service import ImageService

    raw = {"backends": [{"name": "scripted", "kind": "scripted", "models": [{"name": "seer", "vision": True}, {"name": "blind"}]}]}
    config = parse_config(raw, source="test", env={})
    router = build_router(config, BackendContext())
    backend = router.backends["scripted"]
    assert isinstance(backend, ScriptedBackend)
    services = UIServices(router=router, image_pipeline=ImageService.from_config(config, router))
    return ChatHandlers(services), backend


def write_png(path: Path) -> str:
    from PIL import Image

    Image.new("RGB", (64, 48), (200, 30, 30)).save(path, format="PNG")
    return str(path)


async def test_image_reaches_vision_model_prepared(tmp_path: Path) -> None:
    handlers, backend = make_image_handlers()
    image = write_png(tmp_path / "red.png")

    updates = await collect(handlers.chat({"text": "what colour?", "files": [image]}, [], "seer", "", 0.7, 1.0, 64, request()))

    history, _ = updates[-1]
    assert history[0]["content"][0] == {"type": "file", "file": {"path": image, "mime_type": "image/png"}}
    sent = backend.received[-1].messages[-1]
    assert sent.text_content == "what colour?"
    assert len(sent.images) == 1
    assert sent.images[0].mime in ("image/png", "image/jpeg")


async def test_image_to_blind_model_fails_and_keeps_message(tmp_path: Path) -> None:
    handlers, backend = make_image_handlers()
    image = write_png(tmp_path / "red.png")

    updates = await collect(handlers.chat({"text": "what colour?", "files": [image]}, [], "blind", "", 0.7, 1.0, 64, request("zh-CN")))

    history, _ = updates[-1]
    assert history[0]["content"][1]["text"] == "what colour?"
    assert status_block(history)["metadata"]["title"].startswith("失败：")
    assert backend.received == []


def make_layered_handlers(**scripted: Any) -> tuple[ChatHandlers, ScriptedBackend]:
    """Handlers over the real resilience layers (cache, retry without waits) and the scripted backend."""
    from backends.pipeline import build_router
    from config import parse_config

    raw = {
        "backends": [{"name": "scripted", "kind": "scripted", **scripted}],
        "resilience": {"retry": {"backoff_seconds": [0.0], "jitter": 0.0}},
    }
    config = parse_config(raw, source="test", env={})
    router = build_router(config, BackendContext())
    backend = router.backends["scripted"]
    assert isinstance(backend, ScriptedBackend)
    return ChatHandlers(UIServices(router=router)), backend


async def test_retry_notice_shows_under_reply() -> None:
    handlers, backend = make_layered_handlers(replies=[{"text": "", "error": "overloaded"}, {"text": "worked on retry"}])

    history, _ = (await send(handlers, "try"))[-1]

    assert answer_text(history) == "worked on retry"
    details = status_block(history)["content"][0]["text"]
    assert "Retrying: " in details
    assert len(backend.received) == 2


async def test_cached_reply_is_marked_and_regenerate_bypasses_cache() -> None:
    handlers, backend = make_layered_handlers(replies=[{"text": "first sample"}, {"text": "second sample"}])
    first, _ = (await send(handlers, "same question", temperature=0.0))[-1]

    again, _ = (await send(handlers, "same question", temperature=0.0))[-1]

    assert answer_text(again) == "first sample"
    assert " · cached · " in status_block(again)["metadata"]["title"]
    assert len(backend.received) == 1

    regenerated = (await collect(handlers.regenerate(first, MODEL, "", 0.0, 1.0, 256, request())))[-1]
    assert answer_text(regenerated) == "second sample"
    assert "cached" not in status_block(regenerated)["metadata"]["title"]
    assert len(backend.received) == 2


async def test_fallback_shows_in_title_and_notice() -> None:
    from backends.pipeline import build_router
    from config import parse_config

    raw = {
        "backends": [
            {
                "name": "scripted",
                "kind": "scripted",
                "models": [{"name": "primary", "fallback": ["backup"]}],
                "replies": [{"match": "", "text": "", "error": "overloaded"}],
            },
            {"name": "spare", "kind": "scripted", "models": [{"name": "backup"}]},
        ],
        "resilience": {"retry": {"max_retries": 0}},
    }
    config = parse_config(raw, source="test", env={})
    handlers = ChatHandlers(UIServices(router=build_router(config, BackendContext())))

    history, _ = (await send(handlers, "hello", model="primary"))[-1]

    assert answer_text(history) == "hello"
    title = status_block(history)["metadata"]["title"]
    assert title.startswith("backup · spare")
    assert title.endswith(" · after primary: overloaded")
    assert "Falling back: " in status_block(history)["content"][0]["text"]


async def test_context_overflow_is_shown_not_canned_reply() -> None:
    from backends.pipeline import build_router
    from config import parse_config

    raw = {
        "backends": [
            {
                "name": "scripted",
                "kind": "scripted",
                "models": [{"name": "primary", "fallback": ["backup"]}],
                "replies": [{"error": "context_too_long", "error_message": "the prompt is 9000 tokens, over 8192"}],
            },
            {"name": "spare", "kind": "scripted", "models": [{"name": "backup"}], "replies": [{"error": "overloaded"}]},
        ],
        "resilience": {"retry": {"max_retries": 0}},
    }
    config = parse_config(raw, source="test", env={})
    router = build_router(config, BackendContext())
    handlers = ChatHandlers(UIServices(router=router))

    try:
        history, _ = (await send(handlers, "a long conversation", model="primary"))[-1]
    finally:
        await router.aclose()

    assert history[0] == {"role": "user", "content": [{"type": "text", "text": "a long conversation"}]}
    assert answer_text(history) == ""
    title = status_block(history)["metadata"]["title"]
    assert title.startswith("Failed: ")
    assert "context" in title
    details = status_block(history)["content"][0]["text"]
    assert "the prompt is 9000 tokens, over 8192" in details
    assert "try again" not in (title + details).lower()


@pytest.mark.parametrize("language", ["en", "zh-CN"])
async def test_wrong_provider_key_is_shown_not_canned_reply(openai_server: FakeOpenAIServer, language: str) -> None:
    from backends.pipeline import build_router
    from config import parse_config

    openai_server.api_key = "sk-right"
    raw = {
        "backends": [
            {
                "name": "deepseek",
                "kind": "openai",
                "base_url": openai_server.base_url,
                "api_key_env": "DEEPSEEK_API_KEY",
                "models": [{"name": "primary", "fallback": ["backup"]}],
            },
            {"name": "spare", "kind": "scripted", "models": [{"name": "backup"}], "replies": [{"error": "overloaded"}]},
        ],
        "resilience": {"retry": {"max_retries": 0}},
    }
    env = {"DEEPSEEK_API_KEY": "sk-wrong"}
    config = parse_config(raw, source="test", env=env)
    router = build_router(config, BackendContext(env=env))
    handlers = ChatHandlers(UIServices(router=router))

    try:
        history, _ = (await send(handlers, "hello", model="primary", language=language))[-1]
    finally:
        await router.aclose()

    assert answer_text(history) == ""
    title = status_block(history)["metadata"]["title"]
    details = status_block(history)["content"][0]["text"]
    assert title.startswith("Failed: " if language == "en" else "失败：")
    assert "DEEPSEEK_API_KEY" in title + details
    assert ("rejected the API key" if language == "en" else "拒绝了 API 密钥") in title + details
    assert "sk-wrong" not in title + details
    assert "try again" not in (title + details).lower()
    assert "几分钟" not in title + details


async def test_stop_button_ends_reply_with_stopped_state() -> None:
    handlers, backend = make_handlers(replies=[{"text": " ".join(["tok"] * 500)}], chunk_delay=0.02)
    updates = handlers.chat({"text": "long", "files": []}, [], MODEL, "", 0.7, 1.0, 1024, request())
    seen = [await anext(updates) for _ in range(3)]
    assert backend.in_flight == 1

    # The running reply stops itself; the invisible error skips Gradio's cancel.
    with pytest.raises(gr.Error):
        await handlers.stop(request())
    seen += await collect(updates)

    assert backend.in_flight == 0
    final = seen[-1][0]
    assert status_block(final)["metadata"]["title"].startswith("Stopped · scripted-echo")
    assert "tok" in answer_text(final)


async def test_stop_button_without_running_reply_lets_cancel_run() -> None:
    handlers, _backend = make_handlers(replies=[{"text": "done"}])

    assert await handlers.stop(request(session="idle-session")) is None
