"""Both chat APIs reject JSON that would fail later with a 400 naming the problem: lone surrogates, huge integers.

Each case runs against a served app on 127.0.0.1, `POST /v1/chat/completions`
and `/ws/chat` side by side; `/ws/chat` keeps the connection open after it.
"""

from __future__ import annotations

import asyncio
import sys

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from backends.errors import BadRequestError
from backends.request_json import check_unicode, decode_json
from tests.gateway_setup import SCRIPTED_BACKEND, gateway_config, run_gateway
from tests.request_support import RESILIENCE, assert_connection_serves, http_error, post_raw, receive
from tests.request_support import gateway, http, ws  # noqa: F401 - pytest fixtures, used by name

HUGE_INTEGER = "9" * 5000


# A lone surrogate, in every string field that reaches the upstream or the cache key.
# Each body is JSON text with the escape written into one field.
SURROGATE_CASES = [
    pytest.param('{"model":"echo","messages":[{"role":"user","content":"a\\ud800b"}]}', "messages[0].content", id="content"),
    pytest.param(
        '{"model":"echo","messages":[{"role":"user","content":[{"type":"text","text":"\\udfff"}]}]}',
        "messages[0].content[0].text",
        id="text-part",
    ),
    pytest.param(
        '{"model":"echo","messages":[{"role":"system","content":"\\ud800"},{"role":"user","content":"hi"}]}',
        "messages[0].content",
        id="system-prompt",
    ),
    pytest.param('{"model":"echo","messages":[{"role":"user","content":"hi"}],"stop":"\\ud800"}', "stop", id="stop"),
    pytest.param('{"model":"echo","messages":[{"role":"user","content":"hi"}],"stop":["x","\\ud800"]}', "stop[1]", id="stop-list"),
    pytest.param('{"model":"echo","messages":[{"role":"user","content":"hi"}],"user":"\\ud800"}', "user", id="user"),
    pytest.param('{"model":"echo\\ud800","messages":[{"role":"user","content":"hi"}]}', "model", id="model"),
    # The low half before the high half is no pair either.
    pytest.param('{"model":"echo","messages":[{"role":"user","content":"\\ude00\\ud83d"}]}', "messages[0].content", id="reversed-pair"),
]


@pytest.mark.parametrize(("body", "param"), SURROGATE_CASES)
async def test_http_lone_surrogate_is_400(http: httpx.AsyncClient, body: str, param: str) -> None:
    response = await post_raw(http, body)

    assert response.status_code == 400
    error = http_error(response)
    assert error["code"] == "bad_request"
    assert error["param"] == param
    assert "lone UTF-16 surrogate" in error["message"]
    assert "Send valid UTF-8 text" in error["message"]


@pytest.mark.parametrize(("body", "param"), SURROGATE_CASES)
async def test_ws_lone_surrogate_gets_error_frame(ws: ClientConnection, body: str, param: str) -> None:
    frame = '{"type":"request","id":"s",' + body[1:]

    await ws.send(frame)
    error = await receive(ws)

    assert error["type"] == "error"
    assert error["id"] == "s"
    assert error["code"] == "bad_request"
    assert error["retryable"] is False
    assert error["params"]["param"] == param
    assert "lone UTF-16 surrogate" in error["message"]
    assert "valid UTF-8" in error["fix"]
    await assert_connection_serves(ws)


async def test_ws_surrogate_in_id_gets_null_id(ws: ClientConnection) -> None:
    await ws.send('{"type":"request","id":"a\\ud800","model":"echo","messages":[{"role":"user","content":"hi"}]}')

    error = await receive(ws)

    assert error["type"] == "error"
    assert error["id"] is None
    assert error["params"]["param"] == "id"
    await assert_connection_serves(ws)


async def test_surrogate_pair_is_one_character(http: httpx.AsyncClient, ws: ClientConnection) -> None:
    # An escaped pair is valid JSON for one character outside the BMP.
    body = '{"model":"echo","messages":[{"role":"user","content":"\\ud83d\\ude00"}]}'

    response = await post_raw(http, body)
    await ws.send('{"type":"request","id":"p",' + body[1:])
    deltas = []
    while (message := await receive(ws))["type"] != "done":
        deltas.append(message.get("text", ""))

    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "\U0001f600"
    assert "".join(deltas) == "\U0001f600"


async def test_ws_surrogate_in_auth_token_fails_auth() -> None:
    # The key check encodes the token as UTF-8, which a lone surrogate made raise.
    config = gateway_config(SCRIPTED_BACKEND, resilience=RESILIENCE)
    async with run_gateway(config, env={"PARLEY_API_KEYS": "key-0123456789"}) as gateway:
        async with connect(gateway.url.replace("http", "ws", 1) + "/ws/chat") as connection:
            await connection.send('{"type":"auth","token":"key-\\ud800"}')
            error = await receive(connection)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(connection.recv(), timeout=10)

    assert error["type"] == "error"
    assert error["id"] is None
    assert error["code"] == "auth_failed"
    assert connection.close_code == 1008


# Integers past Python's digit limit; tests/test_request_validation.py covers the field ranges.


async def test_http_huge_integer_is_400(http: httpx.AsyncClient) -> None:
    response = await post_raw(http, '{"model":"echo","messages":[{"role":"user","content":"hi"}],"seed":' + HUGE_INTEGER + "}")

    assert response.status_code == 400
    error = http_error(response)
    assert error["code"] == "bad_request"
    assert "integer with more than 4300 digits" in error["message"]


async def test_ws_huge_integer_gets_error_and_stays_open(ws: ClientConnection) -> None:
    await ws.send('{"type":"request","id":"big","model":"echo","seed":' + HUGE_INTEGER + ',"messages":[{"role":"user","content":"x"}]}')

    error = await receive(ws)

    assert error["type"] == "error"
    assert error["code"] == "bad_request"
    assert "integer with more than 4300 digits" in error["message"]
    await assert_connection_serves(ws)


# The shared decoder on its own.


def test_check_unicode_walks_deep_nesting() -> None:
    # As deep as json.loads goes from here, near Python's recursion limit.
    for depth in range(sys.getrecursionlimit(), 0, -10):
        try:
            data = decode_json("[" * depth + '"\\ud800"' + "]" * depth, "the test input")
        except BadRequestError:
            continue
        break

    with pytest.raises(BadRequestError) as caught:
        check_unicode(data)

    assert depth > 500
    assert caught.value.params["param"] == "[0]" * depth


def test_check_unicode_names_a_bad_key() -> None:
    with pytest.raises(BadRequestError) as caught:
        check_unicode(decode_json('{"messages":[{"\\ud800":1}]}', "the test input"))

    assert caught.value.params["param"] == "messages[0].\\ud800"


def test_check_unicode_accepts_non_ascii_text() -> None:
    check_unicode({"content": "你好, caf\u00e9, \U0001f600"})
