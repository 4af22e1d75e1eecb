"""Both chat APIs accept and reject the same chat fields, with a 400 that names the field.

Each case runs against a served app on 127.0.0.1, `POST /v1/chat/completions`
and `/ws/chat` side by side.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from tests.gateway_setup import Gateway
from tests.request_support import chat, final_message, http_error, receive, ws_request
from tests.request_support import gateway, http, ws  # noqa: F401 - pytest fixtures, used by name


RANGE_CASES = [
    pytest.param({"seed": 2**63}, "seed", id="seed-over-64-bit"),
    pytest.param({"seed": -(2**63) - 1}, "seed", id="seed-under-64-bit"),
    pytest.param({"max_tokens": 10**30}, "max_tokens", id="max-tokens"),
    pytest.param({"max_completion_tokens": 2**31}, "max_completion_tokens", id="max-completion-tokens"),
]


@pytest.mark.parametrize(("fields", "param"), RANGE_CASES)
async def test_out_of_range_integer_is_400(
    http: httpx.AsyncClient, ws: ClientConnection, fields: dict[str, Any], param: str
) -> None:
    response = await http.post("/chat/completions", json=chat(**fields))
    await ws.send(json.dumps(ws_request("r", chat(**fields))))
    frame = await receive(ws)

    assert response.status_code == 400
    assert http_error(response)["param"] == param
    assert "less than or equal" in http_error(response)["message"] or "greater than or equal" in http_error(response)["message"]
    assert frame["type"] == "error"
    assert frame["id"] == "r"
    assert frame["params"]["param"] == param


async def test_64_bit_seed_is_accepted(http: httpx.AsyncClient, gateway: Gateway) -> None:
    response = await http.post("/chat/completions", json=chat(seed=2**63 - 1))

    assert response.status_code == 200
    assert gateway.scripted().received[-1].params.seed == 2**63 - 1


# The same fields give the same outcome on both APIs.

ACCEPTED = [
    pytest.param({"messages": [{"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi"}]}, id="developer-role"),
    pytest.param({"top_p": 0}, id="top-p-zero"),
    pytest.param({"tools": [], "tool_choice": "none"}, id="tool-choice-none"),
    pytest.param({"tools": None, "tool_choice": None}, id="tools-null"),
    pytest.param({"function_call": "none"}, id="function-call-none"),
    pytest.param({"n": 1}, id="one-choice"),
    pytest.param({"messages": [{"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]}, {"role": "user", "content": "hi"}]}, id="refusal-part"),
    pytest.param({"messages": [{"role": "assistant", "content": None}, {"role": "user", "content": "hi"}]}, id="assistant-null-content"),
]


@pytest.mark.parametrize("fields", ACCEPTED)
async def test_both_apis_accept(http: httpx.AsyncClient, ws: ClientConnection, fields: dict[str, Any]) -> None:
    response = await http.post("/chat/completions", json=chat(**fields))
    await ws.send(json.dumps(ws_request("ok", chat(**fields))))
    final = await final_message(ws, "ok")

    assert response.status_code == 200, response.text
    assert final["type"] == "done", final


REJECTED = [
    pytest.param({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", id="tools"),
    pytest.param({"tool_choice": "auto"}, "tool_choice", id="tool-choice-auto"),
    pytest.param({"tool_choice": "required"}, "tool_choice", id="tool-choice-required"),
    pytest.param({"tools": [{"type": "function"}], "tool_choice": "none"}, "tools", id="tools-with-choice-none"),
    pytest.param({"logprobs": True}, "logprobs", id="logprobs"),
    pytest.param({"response_format": {"type": "json_object"}}, "response_format.type", id="response-format-json"),
    pytest.param({"n": 2}, "n", id="several-choices"),
    pytest.param({"top_p": 1.5}, "top_p", id="top-p-over-1"),
    pytest.param({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role", id="tool-role"),
    pytest.param(
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://127.0.0.1:1/x.png"}}]}]},
        "messages[0].content[0].image_url.url",
        id="remote-image",
    ),
    pytest.param(
        {"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]},
        "messages[0].content[0]",
        id="image-in-system-message",
    ),
]


@pytest.mark.parametrize(("fields", "param"), REJECTED)
async def test_both_apis_reject(http: httpx.AsyncClient, ws: ClientConnection, fields: dict[str, Any], param: str) -> None:
    response = await http.post("/chat/completions", json=chat(**fields))
    await ws.send(json.dumps(ws_request("bad", chat(**fields))))
    frame = await receive(ws)

    assert response.status_code == 400
    assert http_error(response)["code"] == "bad_request"
    assert http_error(response)["param"] == param
    assert frame["type"] == "error"
    assert frame["id"] == "bad"
    assert frame["code"] == "bad_request"
    assert frame["params"]["param"] == param


async def test_tools_rejection_names_the_fix(http: httpx.AsyncClient) -> None:
    response = await http.post("/chat/completions", json=chat(tools=[{"type": "function"}]))

    assert response.status_code == 400
    assert "tool calls (tools) are not supported" in http_error(response)["message"]
    assert "Leave tools out" in http_error(response)["message"]


async def test_max_completion_tokens_wins_on_both_apis(http: httpx.AsyncClient, ws: ClientConnection, gateway: Gateway) -> None:
    fields = {"max_tokens": 50, "max_completion_tokens": 5}

    await http.post("/chat/completions", json=chat(**fields))
    from_http = gateway.scripted().received[-1].params.max_tokens
    await ws.send(json.dumps(ws_request("m", chat(**fields))))
    await final_message(ws, "m")
    from_ws = gateway.scripted().received[-1].params.max_tokens

    assert from_http == 5
    assert from_ws == 5


async def test_developer_role_is_system_on_both_apis(http: httpx.AsyncClient, ws: ClientConnection, gateway: Gateway) -> None:
    messages = [{"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi"}]

    await http.post("/chat/completions", json=chat(messages=messages))
    from_http = gateway.scripted().received[-1].messages[0].role
    await ws.send(json.dumps(ws_request("d", chat(messages=messages))))
    await final_message(ws, "d")
    from_ws = gateway.scripted().received[-1].messages[0].role

    assert from_http == "system"
    assert from_ws == "system"


@pytest.mark.parametrize("language", ["fr", "zh", "EN"])
async def test_ws_unknown_language_is_rejected(ws: ClientConnection, language: str) -> None:
    await ws.send(json.dumps(ws_request("l", chat(language=language))))

    error = await receive(ws)

    assert error["type"] == "error"
    assert error["id"] == "l"
    assert error["params"]["param"] == "language"
    assert "'zh-CN'" in error["message"]


async def test_ws_chinese_language_is_accepted(ws: ClientConnection) -> None:
    await ws.send(json.dumps(ws_request("zh", chat(language="zh-CN"))))

    assert (await final_message(ws, "zh"))["type"] == "done"


async def test_http_non_ascii_base64_is_400(http: httpx.AsyncClient) -> None:
    content = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K\u00e9"}}]

    response = await http.post("/chat/completions", json=chat(model="seer", messages=[{"role": "user", "content": content}]))

    assert response.status_code == 400
    assert http_error(response)["param"] == "messages[0].content[0].image_url.url"
    assert "not valid base64" in http_error(response)["message"]
