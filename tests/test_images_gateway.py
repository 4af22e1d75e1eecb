"""Images through the HTTP gateway: the pipeline, the vision rules and the cache, with real peers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
from PIL import Image
from websockets.asyncio.client import connect

from backends.types import ImagePart, TextPart
from config import parse_config
from multimodal.image_service import IMAGE_PLACEHOLDER, UNREADABLE_PLACEHOLDER
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer
from tests.gateway_setup import BARE_RESILIENCE, Gateway, run_gateway
from tests.test_images import RED, marked_upright, near, noisy_photo, png_header_only

SCRIPTED: dict[str, Any] = {
    "name": "script",
    "kind": "scripted",
    "models": [
        {"name": "echo"},
        {"name": "seer", "vision": True},
        {"name": "blind", "fallback": ["seer"]},
    ],
    "replies": [],
}


def vision_upstream(base_url: str) -> dict[str, Any]:
    return {
        "name": "fake",
        "kind": "openai",
        "base_url": base_url,
        "models": [{"name": "fake-vision", "vision": True, "max_image_side": 512}],
    }


def config_for(base_url: str, *, resilience: dict[str, Any] | None = None, images: dict[str, Any] | None = None) -> Any:
    raw: dict[str, Any] = {
        "backends": [SCRIPTED, vision_upstream(base_url)],
        "resilience": resilience or BARE_RESILIENCE,
    }
    if images:
        raw["images"] = images
    return parse_config(raw, source="test config", env={})


def data_url(data: bytes, mime: str = "image/jpeg") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def image_turn(url: str, text: str = "what is this") -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]}


def jpeg(image: Image.Image, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92, **params)
    return buffer.getvalue()


def gps_photo() -> bytes:
    """An upright-marked photo stored rotated (orientation 6), with camera make and GPS position."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "SecretCam"
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (31.0, 14.0, 0.0)
    gps[3] = "E"
    gps[4] = (121.0, 28.0, 0.0)
    stored = marked_upright((1200, 600)).transpose(Image.Transpose.ROTATE_90)
    return jpeg(stored, exif=exif.tobytes())


@pytest.fixture
async def gateway(openai_server: FakeOpenAIServer) -> AsyncIterator[Gateway]:
    async with run_gateway(config_for(openai_server.base_url)) as running:
        yield running


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.v1, timeout=30) as client:
        yield client


async def test_gps_never_reaches_vision_upstream(gateway: Gateway, openai_server: FakeOpenAIServer) -> None:
    openai_server.script(Behaviour(reply="A red corner."))
    async with openai.AsyncOpenAI(base_url=gateway.v1, api_key="unused", max_retries=0) as client:
        completion = await client.chat.completions.create(
            model="fake-vision", messages=[image_turn(data_url(gps_photo()))]  # type: ignore[list-item]
        )

    assert completion.choices[0].message.content == "A red corner."
    sent_part = openai_server.chat_requests[-1].json["messages"][0]["content"][1]
    url = sent_part["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    sent = base64.b64decode(url.split(",", 1)[1])
    assert b"SecretCam" not in sent
    assert b"Exif" not in sent
    image = Image.open(io.BytesIO(sent))
    assert not image.getexif()
    assert "exif" not in image.info
    # Upright, and within the 512 px long side configured for fake-vision.
    assert image.size == (512, 256)
    assert near(image.convert("RGB").getpixel((10, 10)), RED)


async def test_text_model_hands_image_to_vision_fallback(gateway: Gateway, http: httpx.AsyncClient) -> None:
    body = {"model": "blind", "messages": [image_turn(data_url(jpeg(noisy_photo((300, 200)))))]}

    response = await http.post("/chat/completions", json=body)

    assert response.status_code == 200
    assert response.headers["x-parley-served-by"] == "script/seer"
    received = gateway.scripted().received[-1]
    assert received.model == "seer"
    assert isinstance(received.messages[0].parts[1], ImagePart)


async def test_history_image_becomes_placeholder(gateway: Gateway, http: httpx.AsyncClient) -> None:
    body = {
        "model": "echo",
        "messages": [
            image_turn(data_url(jpeg(noisy_photo((200, 200))))),
            {"role": "assistant", "content": "A noisy square."},
            {"role": "user", "content": "tell me more"},
        ],
    }

    response = await http.post("/chat/completions", json=body)

    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "tell me more"
    first = gateway.scripted().received[-1].messages[0]
    assert first.images == ()
    assert first.parts == (TextPart("what is this"), TextPart(IMAGE_PLACEHOLDER))


async def test_unreadable_history_image_is_skipped(gateway: Gateway, http: httpx.AsyncClient) -> None:
    broken = data_url(b"not an image at all\n", mime="image/png")
    good = jpeg(noisy_photo((120, 80)))
    body = {
        "model": "seer",
        "messages": [
            image_turn(broken),
            {"role": "assistant", "content": "That file did not open."},
            image_turn(data_url(good), text="try this one"),
        ],
    }

    response = await http.post("/chat/completions", json=body)

    assert response.status_code == 200
    messages = gateway.scripted().received[-1].messages
    assert messages[0].parts == (TextPart("what is this"), TextPart(UNREADABLE_PLACEHOLDER))
    assert len(messages[2].images) == 1


async def test_unreadable_latest_image_is_400(http: httpx.AsyncClient) -> None:
    body = {
        "model": "seer",
        "messages": [
            image_turn(data_url(jpeg(noisy_photo((60, 60))))),
            {"role": "assistant", "content": "A square."},
            image_turn(data_url(b"%PDF-1.4\n", mime="image/png")),
        ],
    }

    response = await http.post("/chat/completions", json=body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "messages[2].content[1]"
    assert "a PDF document, not an image" in error["message"]


async def test_new_image_without_vision_chain_is_400(http: httpx.AsyncClient) -> None:
    body = {"model": "echo", "messages": [image_turn(data_url(jpeg(noisy_photo((50, 50)))))]}

    response = await http.post("/chat/completions", json=body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "image_not_supported"
    assert "'echo' cannot see images" in error["message"]
    assert "seer" in error["message"]
    assert "fake-vision" in error["message"]


async def test_text_file_as_image_is_named(http: httpx.AsyncClient) -> None:
    url = data_url("just some notes\n".encode(), mime="image/png")
    body = {"model": "seer", "messages": [image_turn(url)]}

    response = await http.post("/chat/completions", json=body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "not_an_image"
    assert error["param"] == "messages[0].content[1]"
    assert "a text file, not an image" in error["message"]


async def test_pixel_bomb_through_gateway_is_413(http: httpx.AsyncClient) -> None:
    body = {"model": "seer", "messages": [image_turn(data_url(png_header_only(20000, 20000), mime="image/png"))]}

    response = await http.post("/chat/completions", json=body)

    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "image_too_many_pixels"
    assert "20000x20000 = 400000000 pixels, over the limit of 50000000" in error["message"]
    assert "178956970 pixels" not in error["message"]


async def test_too_many_images_is_413(openai_server: FakeOpenAIServer) -> None:
    url = data_url(jpeg(noisy_photo((40, 40))))
    body = {"model": "seer", "messages": [image_turn(url), image_turn(url), image_turn(url)]}

    async with run_gateway(config_for(openai_server.base_url, images={"max_images": 2})) as running:
        async with httpx.AsyncClient(base_url=running.v1) as client:
            response = await client.post("/chat/completions", json=body)

    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "too_many_images"
    assert "3 images" in error["message"]


async def test_cache_key_follows_image_content(openai_server: FakeOpenAIServer) -> None:
    resilience = {"cache": {"enabled": True}, "retry": {"max_retries": 0}, "fallback": {"canned_reply": False}}
    first = data_url(jpeg(noisy_photo((64, 64))))
    other = data_url(jpeg(noisy_photo((64, 64)).transpose(Image.Transpose.FLIP_LEFT_RIGHT)))

    async with run_gateway(config_for(openai_server.base_url, resilience=resilience)) as running:
        async with httpx.AsyncClient(base_url=running.v1) as client:
            for url in (first, first, other):
                response = await client.post("/chat/completions", json={"model": "seer", "messages": [image_turn(url)]})
                assert response.status_code == 200
        received = running.scripted().received

    # The repeated image is served from the cache; the other image with the same text is not.
    assert len(received) == 2
    images = [request.messages[0].images[0] for request in received]
    assert images[0].sha256 != images[1].sha256


async def test_repeated_history_image_is_prepared_once(
    gateway: Gateway, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    first_turn = image_turn(data_url(jpeg(noisy_photo((300, 300)))))
    conversation = [first_turn, {"role": "assistant", "content": "Noise."}, {"role": "user", "content": "and now?"}]

    with caplog.at_level(logging.INFO, logger="multimodal.images"):
        for messages in ([first_turn], conversation):
            response = await http.post("/chat/completions", json={"model": "seer", "messages": messages})
            assert response.status_code == 200

    prepared = [record for record in caplog.records if record.getMessage().startswith("image prepared")]
    assert len(prepared) == 1
    received = gateway.scripted().received
    assert received[-1].messages[0].images[0].sha256 == received[-2].messages[0].images[0].sha256


async def test_websocket_image_goes_to_vision_fallback(gateway: Gateway) -> None:
    message = {
        "type": "request",
        "id": "img-1",
        "model": "blind",
        "messages": [image_turn(data_url(gps_photo()), text="describe")],
    }

    async with connect(gateway.url.replace("http", "ws", 1) + "/ws/chat") as connection:
        await connection.send(json.dumps(message))
        replies: list[dict[str, Any]] = []
        while not replies or replies[-1]["type"] not in ("done", "error"):
            replies.append(json.loads(await asyncio.wait_for(connection.recv(), timeout=10)))

    assert replies[0]["type"] == "notice"
    assert replies[0]["message"] == "blind cannot see images; seer answers this message instead."
    assert replies[-1]["type"] == "done"
    assert replies[-1]["served_by"] == "script/seer"
    sent = gateway.scripted().received[-1].messages[0].images[0]
    assert b"SecretCam" not in sent.data
    assert Image.open(io.BytesIO(sent.data)).size == (1200, 600)


@pytest.mark.parametrize(("image_format", "mime"), [("BMP", "image/bmp"), ("TIFF", "image/tiff"), ("HEIF", "image/heic")])
async def test_less_common_formats_are_accepted(
    gateway: Gateway, http: httpx.AsyncClient, image_format: str, mime: str
) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), RED).save(buffer, image_format)
    body = {"model": "seer", "messages": [image_turn(data_url(buffer.getvalue(), mime=mime))]}

    response = await http.post("/chat/completions", json=body)

    assert response.status_code == 200
    sent = gateway.scripted().received[-1].messages[0].images[0]
    assert sent.mime in ("image/png", "image/jpeg")
    assert Image.open(io.BytesIO(sent.data)).size == (64, 48)


async def test_stream_carries_image_notice(http: httpx.AsyncClient) -> None:
    body = {
        "model": "echo",
        "stream": True,
        "messages": [
            image_turn(data_url(jpeg(noisy_photo((80, 80))))),
            {"role": "assistant", "content": "Grey noise."},
            {"role": "user", "content": "thanks"},
        ],
    }

    response = await http.post("/chat/completions", json=body)

    assert response.status_code == 200
    lines = response.text.splitlines()
    notice = ": notice info: echo cannot see images, so 1 image(s) from earlier turns were left out of this request."
    assert notice in lines
    assert lines.index(notice) < next(index for index, line in enumerate(lines) if line.startswith("data: "))
