"""Checks every chat request passes before it reaches a model, for HTTP and WebSocket alike."""

from __future__ import annotations

from backends.errors import InputTooLargeError
from backends.router import Router
from backends.types import ChatRequest, ModelInfo
from multimodal.image_errors import image_not_supported


def check_chat_request(request: ChatRequest, router: Router, max_prompt_chars: int) -> ModelInfo:
    """Check the model exists, can see the images sent and the prompt fits; return the model's info."""
    info = router.info(request.model)

    prompt_chars = sum(len(message.text_content) for message in request.messages)
    if prompt_chars > max_prompt_chars:
        raise InputTooLargeError(
            f"the prompt is {prompt_chars} characters, over the limit of {max_prompt_chars} (server.max_prompt_chars)",
            fix="Shorten the messages, or raise server.max_prompt_chars in the config.",
            param="messages",
            limit=max_prompt_chars,
        )

    if not info.capabilities.vision and any(message.images for message in request.messages):
        vision_models = sorted(model.name for model in router.models() if model.capabilities.vision)
        raise image_not_supported(info.name, vision_models, param="messages")
    return info
