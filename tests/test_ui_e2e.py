"""The Chat tab end to end: the whole app on 127.0.0.1, driven through gradio_client."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from gradio_client import Client

from tests.fakes.openai_server import Behaviour, FakeOpenAIServer
from tests.ui_support import scripted_config, serve_parley

SECRET = "sk-parley-test-secret-5f1c9a"


def status_title(history: list[dict[str, Any]]) -> str:
    return str((history[-1].get("metadata") or {}).get("title") or "")


def answer_text(history: list[dict[str, Any]]) -> str:
    answers = [m for m in history if m["role"] == "assistant" and not (m.get("metadata") or {}).get("title")]
    return str(answers[-1]["content"][0]["text"]) if answers else ""


def chat_args(text: str, model: str = "scripted-echo", history: list[Any] | None = None) -> tuple[Any, ...]:
    return ({"text": text, "files": []}, history or [], model, "", 0.7, 1.0, 1024)


@pytest.fixture
def scripted_app() -> Iterator[str]:
    raw = scripted_config(replies=[{"text": "Streaming works: one two three four five six.", "prompt_tokens": 3, "completion_tokens": 8}], chunk_delay=0.02)
    with serve_parley(raw) as url:
        yield url


def test_client_streams_scripted_reply(scripted_app: str) -> None:
    client = Client(scripted_app + "/", verbose=False)

    job = client.submit(*chat_args("hello"), api_name="/chat")
    outputs = list(job)

    history, textbox = outputs[-1]
    assert len(outputs) >= 3
    assert textbox == {"text": "", "files": []}
    assert answer_text(history) == "Streaming works: one two three four five six."
    assert status_title(history).startswith("scripted-echo · scripted · first token ")
    assert "3 prompt + 8 completion tokens" in status_title(history)
    # Earlier outputs show the reply growing.
    partial = [answer_text(history) for history, _ in outputs[:-1]]
    assert any(0 < len(text) < len(answer_text(history)) for text in partial)


def test_client_gets_chinese_text_for_chinese_accept_language(scripted_app: str) -> None:
    client = Client(scripted_app + "/", verbose=False, headers={"Accept-Language": "zh-CN,zh;q=0.9"})

    history, _ = client.predict(*chat_args("你好"), api_name="/chat")

    assert "首字" in status_title(history)


def test_client_over_limit_message_is_refused(scripted_app: str) -> None:
    client = Client(scripted_app + "/", verbose=False)

    with pytest.raises(Exception) as raised:
        client.predict(*chat_args("x" * 200_001), api_name="/chat")

    assert "200000" in str(raised.value)


@pytest.fixture
def fake_upstream_app(openai_server_thread: FakeOpenAIServer) -> Iterator[tuple[str, FakeOpenAIServer]]:
    """The app with one openai-kind backend pointed at the fake server; its key is SECRET."""
    server = openai_server_thread
    raw = {
        "backends": [
            {
                "name": "fake",
                "kind": "openai",
                "base_url": server.base_url,
                "api_key_env": "FAKE_OPENAI_KEY",
                "models": [{"name": "fake-model"}],
            }
        ]
    }
    with serve_parley(raw, env={"FAKE_OPENAI_KEY": SECRET}) as url:
        yield url, server


def test_page_carries_no_secret_and_monitoring_is_off(fake_upstream_app: tuple[str, FakeOpenAIServer]) -> None:
    url, server = fake_upstream_app
    client = Client(url + "/", verbose=False)
    client.predict(*chat_args("hi", model="fake-model"), api_name="/chat")

    # The key reached the upstream server, but not the page, its config or the API info.
    assert server.chat_requests[0].headers.get("authorization") == f"Bearer {SECRET}"
    for path in ("/", "/config", "/gradio_api/info"):
        response = httpx.get(url + path, timeout=10)
        assert response.status_code == 200, path
        assert SECRET not in response.text, path
    for path in ("/monitoring", "/monitoring/summary"):
        assert httpx.get(url + path, timeout=10).status_code == 403, path

    # No run history in the browser, no share button, no runs link.
    config = httpx.get(url + "/config", timeout=10).json()
    assert config["run_history"] is False
    assert config["footer_links"] == ["api", "settings"]
    chatbot = next(c for c in config["components"] if c.get("props", {}).get("elem_id") == "parley-chatbot")
    assert chatbot["props"]["buttons"] == ["copy", "copy_all"]


def test_stop_closes_upstream_connection(fake_upstream_app: tuple[str, FakeOpenAIServer]) -> None:
    url, server = fake_upstream_app
    server.default = Behaviour(reply=" ".join(["word"] * 400), chunk_delay=0.02)
    client = Client(url + "/", verbose=False)
    job = client.submit(*chat_args("talk a lot", model="fake-model"), api_name="/chat")
    server.wait_until_sync(lambda: server.in_flight == 1, timeout=10)
    deadline = time.monotonic() + 10
    while len(job.outputs()) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(job.outputs()) >= 3

    job.cancel()

    server.wait_until_sync(lambda: server.disconnects >= 1 and server.in_flight == 0, timeout=10)
    assert len(server.chat_requests) == 1
    streamed = answer_text(job.outputs()[-1][0])
    assert streamed.startswith("word word")
    assert len(streamed.split()) < 400


def test_two_clients_stream_at_the_same_time() -> None:
    raw = scripted_config(replies=[{"text": " ".join(["tok"] * 40)}], chunk_delay=0.05)
    with serve_parley(raw) as url:
        windows: dict[str, tuple[float, float]] = {}

        def run(name: str) -> None:
            client = Client(url + "/", verbose=False)
            first_token: float | None = None
            job = client.submit(*chat_args(f"hello from {name}"), api_name="/chat")
            for history, _ in job:
                if first_token is None and answer_text(history):
                    first_token = time.monotonic()
            assert first_token is not None
            windows[name] = (first_token, time.monotonic())

        first = threading.Thread(target=run, args=("first",))
        first.start()
        time.sleep(0.3)
        second = threading.Thread(target=run, args=("second",))
        second.start()
        first.join(timeout=60)
        second.join(timeout=60)

        assert set(windows) == {"first", "second"}
        # The second user's first token arrives while the first is still streaming.
        assert windows["second"][0] < windows["first"][1]


@pytest.mark.slow
def test_client_streams_reply_from_local_smollm2() -> None:
    pytest.importorskip("llama_cpp")
    raw = {"backends": [{"name": "local", "kind": "llama_cpp", "n_ctx": 1024}]}
    with serve_parley(raw) as url:
        client = Client(url + "/", verbose=False)
        model = client.view_api(print_info=False, return_format="dict")  # warms the connection
        assert "/chat" in model["named_endpoints"]

        job = client.submit({"text": "Say hello in one short sentence.", "files": []}, [], "smollm2", "", 0.2, 1.0, 24, api_name="/chat")
        outputs = list(job)

        history, _ = outputs[-1]
        assert answer_text(history).strip() != ""
        assert status_title(history).startswith("smollm2 · local")
        assert "tokens/s" in status_title(history)


def test_closed_tab_closes_upstream_while_waiting(openai_server_thread: FakeOpenAIServer) -> None:
    server = openai_server_thread
    server.default = Behaviour(reply="too late", hang_before_first_byte=30)
    raw = {"backends": [{"name": "fake", "kind": "openai", "base_url": server.base_url, "models": [{"name": "fake-model"}]}]}
    with serve_parley(raw) as url:
        config = httpx.get(url + "/config", timeout=10).json()
        index, dependency = next((i, d) for i, d in enumerate(config["dependencies"]) if d.get("api_name") == "chat")
        payload = {
            "data": [{"text": "hi", "files": []}, [], "fake-model", "", 0.7, 1.0, 64],
            "fn_index": index,
            "session_hash": "closed-tab",
            "event_data": None,
            "trigger_id": dependency["targets"][0][0],
        }
        assert httpx.post(url + "/gradio_api/queue/join", json=payload, timeout=10).status_code == 200

        # The browser tab: read the event stream until the reply is generating, then close it.
        with httpx.stream("GET", url + "/gradio_api/queue/data", params={"session_hash": "closed-tab"}, timeout=30) as stream:
            for line in stream.iter_lines():
                if '"process_generating"' in line:
                    break
        assert server.in_flight == 1

        # The upstream request hangs for 30 s; the handler's heartbeat lets Gradio stop it long before.
        server.wait_until_sync(lambda: server.in_flight == 0, timeout=10)
        assert server.disconnects == 1


@pytest.mark.slow
def test_local_context_overflow_shows_clear_message() -> None:
    pytest.importorskip("llama_cpp")
    # The default resilience settings, canned reply included: the overflow error must still reach the page.
    raw = {"backends": [{"name": "local", "kind": "llama_cpp", "n_ctx": 256}]}
    with serve_parley(raw) as url:
        client = Client(url + "/", verbose=False, headers={"Accept-Language": "zh-CN"})
        long_prompt = "这是一段很长的文字。" * 200

        history, _ = client.predict({"text": long_prompt, "files": []}, [], "smollm2", "", 0.2, 1.0, 16, api_name="/chat")

        assert history[0]["role"] == "user"
        assert history[0]["content"][0]["text"] == long_prompt
        title = status_title(history)
        assert title.startswith("失败：")
        assert "上下文" in title
