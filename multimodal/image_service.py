"""Images in chat requests: preparation with the serving model's limits, and the vision rules.

Every caller that accepts images (the HTTP gateway, the chat tab, the Image
tab) goes through `ImageService`, so the rules hold everywhere:

- the images of the latest user message go to a model that can see them:
  the requested model, else the first vision model of its fallback chain
  (the request is re-targeted and a notice tells the user), else the request is
  rejected with `ImageNotSupportedError` naming the models that can;
- images in earlier turns never make a later turn fail: for a model without
  vision they are replaced by a text placeholder, with a notice, so a user
  can switch to a text-only model in the middle of a conversation, and an
  earlier image that cannot be read is replaced the same way;
- every image is prepared by the pipeline with the limits of the model that
  will see it; images this service prepared earlier within those limits
  are passed on unchanged, so their `sha256` (part of the cache key) is stable.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from backends.errors import ParleyError
from backends.layers.fallback import expand_chains
from backends.router import Router
from backends.settings import ModelSettings
from backends.types import ChatRequest, ImagePart, Message, Notice, Part, TextPart
from multimodal.image_errors import TooManyImagesError, image_not_supported
from multimodal.images import ImageLimits, ImagePipeline, ImageSettings, PreparedImage

if TYPE_CHECKING:
    from config import AppConfig

logger = logging.getLogger(__name__)

# The text a model without vision receives in place of an earlier image.
# The newline keeps it apart from the message's text when the parts are joined.
IMAGE_PLACEHOLDER = "[image omitted: this model cannot see images]\n"

# How many prepared images the service remembers, to pass them on unchanged.
_REMEMBERED_IMAGES = 4096

# Bytes of prepared images kept for reuse when a conversation sends them again.
_RESULTS_MAX_BYTES = 64 * 1024 * 1024

# The text in place of an earlier image that could not be read.
UNREADABLE_PLACEHOLDER = "[image omitted: the file could not be read]\n"

NOTICES: dict[str, dict[str, str]] = {
    "images_omitted": {
        "en": "{model} cannot see images, so {count} image(s) from earlier turns were left out of this request.",
        "zh-CN": "{model} 无法识别图片，因此本次请求省略了之前对话中的 {count} 张图片。",
    },
    "images_unreadable": {
        "en": "{count} image(s) from earlier turns could not be read and were left out of this request.",
        "zh-CN": "之前对话中的 {count} 张图片无法读取，已从本次请求中省略。",
    },
    "vision_fallback": {
        "en": "{model} cannot see images; {target} answers this message instead.",
        "zh-CN": "{model} 无法识别图片，本条消息改由 {target} 回答。",
    },
}


@dataclass(frozen=True, slots=True)
class FittedRequest:
    """A request ready for the router, and the notices the caller shows before the reply."""

    request: ChatRequest
    notices: tuple[Notice, ...] = ()


class ImageService:
    """Prepares images for chat requests and applies the vision rules; see the module docstring."""

    def __init__(
        self,
        pipeline: ImagePipeline,
        router: Router,
        models: Mapping[str, ModelSettings],
        chains: Mapping[str, Sequence[str]],
    ) -> None:
        self.pipeline = pipeline
        self.settings = pipeline.settings
        self._router = router
        self._models = dict(models)
        self._chains = {name: list(chain) for name, chain in chains.items()}
        # sha256 of images this service produced -> (long side, bytes).
        self._prepared: OrderedDict[str, tuple[int, int]] = OrderedDict()
        # (sha256 of the raw image, limits) -> the prepared image, least recently used first.
        self._results: OrderedDict[tuple[str, ImageLimits], ImagePart] = OrderedDict()
        self._results_bytes = 0

    @classmethod
    def from_config(cls, config: AppConfig, router: Router, executor: Executor | None = None) -> ImageService:
        settings: ImageSettings = config.images
        models = {model.name: model for backend in config.backends for model in backend.models}
        owners = {model.name: backend.name for backend in config.backends for model in backend.models}
        chains = expand_chains({name: model.fallback for name, model in models.items()}, owners)
        return cls(ImagePipeline(settings, executor), router, models, chains)

    def close(self) -> None:
        self.pipeline.close()

    # Choosing the model that receives the images.

    def vision_models(self) -> list[str]:
        """Return the configured models that can see images, in config order."""
        return [info.name for info in self._router.models() if info.capabilities.vision]

    def can_see_images(self, model: str) -> bool:
        return self._router.info(model).capabilities.vision

    def vision_target(self, model: str) -> str | None:
        """Return the model that answers an image sent to `model`: itself, a vision fallback, or None."""
        for name in self._chains.get(model, [model]):
            if self.can_see_images(name):
                return name
        return None

    # Preparing images.

    def limits_for(self, model: str | None) -> ImageLimits:
        """Return the image limits of `model`, or the defaults when it is None or not configured."""
        return self.pipeline.limits(self._models.get(model) if model else None)

    async def prepare(self, data: bytes, model: str | None = None) -> PreparedImage:
        """Prepare uploaded bytes with the limits of `model` (or the defaults when it is None or unknown)."""
        prepared = await self.pipeline.prepare(data, self._models.get(model) if model else None)
        self._remember(prepared.part, max(prepared.report.final_size), prepared.report.final_bytes)
        return prepared

    async def prepare_request(self, request: ChatRequest) -> FittedRequest:
        """Fit `request` to the vision rules, then prepare every image it still carries.

        Raises `ImageNotSupportedError` when no model of the chain can see
        the new images, `TooManyImagesError` past `images.max_images`, and
        the pipeline's errors with `param` naming the content part at fault
        (as in `messages[1].content[0]`).
        """
        fitted = self.fit_to_model(request)
        request = fitted.request

        count = sum(len(message.images) for message in request.messages)
        if count > self.settings.max_images:
            raise TooManyImagesError(
                f"the request has {count} images, over the limit of {self.settings.max_images}",
                count=count,
                limit=self.settings.max_images,
            )
        if count == 0:
            return fitted

        # An image in an earlier turn that cannot be read (it failed when it was
        # sent, and the chat history kept it) becomes a placeholder, so it does
        # not fail every later turn; one in the latest user message raises.
        limits_model = self._models.get(request.model)
        latest_user = _latest_user_index(request.messages)
        results = await asyncio.gather(
            *(
                self._prepare_message(message, index, limits_model, tolerate=latest_user is not None and index < latest_user)
                for index, message in enumerate(request.messages)
            )
        )
        messages = tuple(message for message, _ in results)
        unreadable = sum(count for _, count in results)
        notices = fitted.notices
        if unreadable:
            text = _notice("images_unreadable", request.language, count=unreadable)
            notices = (*notices, Notice(kind="info", message=text))
        return FittedRequest(dataclasses.replace(request, messages=messages), notices)

    async def _prepare_message(
        self, message: Message, index: int, model: ModelSettings | None, *, tolerate: bool
    ) -> tuple[Message, int]:
        """Prepare the images of one message; with `tolerate`, replace unreadable ones and count them."""
        if not message.images:
            return message, 0

        parts: list[Part] = []
        unreadable = 0
        for number, part in enumerate(message.parts):
            if isinstance(part, ImagePart) and not self._fits(part, model):
                try:
                    part = await self._prepare_part(part, model)
                except ParleyError as error:
                    if not tolerate:
                        error.params.setdefault("param", f"messages[{index}].content[{number}]")
                        raise
                    logger.info("left an unreadable image out of messages[%d]: %s", index, error)
                    part = TextPart(UNREADABLE_PLACEHOLDER)
                    unreadable += 1
            parts.append(part)
        return Message(role=message.role, parts=tuple(parts)), unreadable

    async def _prepare_part(self, part: ImagePart, model: ModelSettings | None) -> ImagePart:
        """Prepare a raw image, reusing the result for the same bytes and limits (chat history repeats them)."""
        limits = self.pipeline.limits(model)
        key = (part.sha256, limits)
        cached = self._results.get(key)
        if cached is not None:
            self._results.move_to_end(key)
            return cached

        prepared = (await self.prepare(part.data, model.name if model else None)).part
        self._results[key] = prepared
        self._results_bytes += len(prepared.data)
        while self._results_bytes > _RESULTS_MAX_BYTES and self._results:
            _, dropped = self._results.popitem(last=False)
            self._results_bytes -= len(dropped.data)
        return prepared

    def _fits(self, part: ImagePart, model: ModelSettings | None) -> bool:
        """Tell whether this service prepared `part` already, within `model`'s limits."""
        known = self._prepared.get(part.sha256)
        if known is None:
            return False
        limits = self.pipeline.limits(model)
        long_side, size = known
        return long_side <= limits.max_side and size <= limits.max_bytes

    def _remember(self, part: ImagePart, long_side: int, size: int) -> None:
        self._prepared[part.sha256] = (long_side, size)
        self._prepared.move_to_end(part.sha256)
        while len(self._prepared) > _REMEMBERED_IMAGES:
            self._prepared.popitem(last=False)

    # The vision rules.

    def fit_to_model(self, request: ChatRequest) -> FittedRequest:
        """Apply the vision rules without preparing anything; see the module docstring."""
        if not any(message.images for message in request.messages):
            return FittedRequest(request)

        model = request.model
        latest_user = _latest_user_index(request.messages)
        new_images = latest_user is not None and bool(request.messages[latest_user].images)

        if self.can_see_images(model):
            return FittedRequest(request)

        if new_images:
            target = self.vision_target(model)
            if target is None:
                raise image_not_supported(model, self.vision_models())
            logger.info("images sent to %s, which cannot see them, go to %s instead", model, target)
            notice = Notice(kind="info", message=_notice("vision_fallback", request.language, model=model, target=target))
            return FittedRequest(dataclasses.replace(request, model=target), (notice,))

        messages, omitted = _replace_images(request.messages)
        logger.info("left %d earlier image(s) out of a request to %s, which cannot see images", omitted, model)
        notice = Notice(kind="info", message=_notice("images_omitted", request.language, model=model, count=omitted))
        return FittedRequest(dataclasses.replace(request, messages=messages), (notice,))


def _latest_user_index(messages: Sequence[Message]) -> int | None:
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].role == "user":
            return index
    return None


def _replace_images(messages: Sequence[Message]) -> tuple[tuple[Message, ...], int]:
    """Replace every image with the text placeholder; return the messages and how many were replaced."""
    replaced = 0
    result: list[Message] = []
    for message in messages:
        if not message.images:
            result.append(message)
            continue
        parts: list[Part] = []
        for part in message.parts:
            if isinstance(part, ImagePart):
                parts.append(TextPart(IMAGE_PLACEHOLDER))
                replaced += 1
            else:
                parts.append(part)
        result.append(Message(role=message.role, parts=tuple(parts)))
    return tuple(result), replaced


def _notice(key: str, language: str, **values: object) -> str:
    templates = NOTICES[key]
    template = templates.get("zh-CN" if language.lower().startswith("zh") else "en", templates["en"])
    return template.format(**values)
