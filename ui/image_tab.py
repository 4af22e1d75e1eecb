"""The Image tab: upload an image, see exactly what a model receives, ask about it or send it to the chat."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from backends.errors import ParleyError
from backends.types import ChatRequest, ImagePart, Message, TextPart
from multimodal.image_service import ImageService
from multimodal.images import ImageReport, PreparedImage
from ui.formatting import escape_html, text_block
from ui.i18n import label, language_from_request, translate, translate_error, user_error
from ui.reply import Reply
from ui.services import UIServices
from ui.streaming import paced

logger = logging.getLogger(__name__)

# Extensions offered in the file picker; the pipeline identifies files by content anyway.
IMAGE_EXTENSIONS = [".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif"]

# Prepared previews kept on disk for the browser; older ones are deleted.
_PREVIEWS_KEPT = 200

_SWITCH_TO_CHAT = "() => { document.querySelector('#parley-tab-chat-button')?.click(); }"


@dataclass
class ImageTab:
    """The Image tab's components, for tests and for tabs that extend it."""

    upload: gr.File
    model: gr.Dropdown
    preview: gr.Image
    report: gr.Markdown
    question: gr.Textbox
    ask: gr.Button
    answer: gr.Chatbot
    send_to_chat: gr.Button | None


class ImageHandlers:
    """Event handlers of the Image tab: `images` prepares the upload, the router streams the reply."""

    def __init__(self, services: UIServices, images: ImageService) -> None:
        self.services = services
        self.images = images
        self._previews = Path(tempfile.gettempdir()) / "parley-image-previews"

    async def prepare(
        self, path: str | None, model: str | None, request: gr.Request
    ) -> tuple[str | None, str, PreparedImage | None]:
        """Prepare the uploaded file for `model`; return the preview path, the report and the state."""
        if not path:
            return None, "", None

        language = language_from_request(request)
        try:
            data = await asyncio.to_thread(Path(path).read_bytes)
            prepared = await self.images.prepare(data, model)
        except ParleyError as error:
            logger.info("image upload rejected: %s", error)
            return None, f"**❌ {escape_html(translate_error(error, language))}**", None

        preview = await asyncio.to_thread(self._write_preview, prepared)
        max_side = self.images.limits_for(model).max_side
        return str(preview), render_report(prepared.report, max_side, language), prepared

    def _write_preview(self, prepared: PreparedImage) -> Path:
        """Write the exact bytes the model receives, named by their hash, so the browser shows them unchanged."""
        self._previews.mkdir(parents=True, exist_ok=True)
        suffix = ".png" if prepared.part.mime == "image/png" else ".jpg"
        path = self._previews / f"{prepared.part.sha256[:32]}{suffix}"
        if not path.exists():
            path.write_bytes(prepared.part.data)

        previews = sorted(self._previews.iterdir(), key=lambda item: item.stat().st_mtime)
        for old in previews[:-_PREVIEWS_KEPT]:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
        return path

    async def ask(
        self,
        prepared: PreparedImage | None,
        preview: str | None,
        question: str,
        model: str,
        request: gr.Request,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Ask `model` about the prepared image and stream the answer."""
        language = language_from_request(request)
        if prepared is None or not preview:
            raise user_error(translate("image.need_image", language))

        text = question.strip() or translate("image.default_question", language)
        shown_question = {
            "role": "user",
            "content": [
                {"type": "file", "file": {"path": preview, "mime_type": prepared.part.mime}},
                text_block(escape_html(text)),
            ],
        }
        reply = Reply(model=model, language=language)
        yield [shown_question, *reply.messages()]

        try:
            chat_request = ChatRequest(
                messages=(Message(role="user", parts=(prepared.part, TextPart(text))),),
                model=model,
                language=language,
                user=getattr(request, "username", None) or None,
            )
            fitted = self.images.fit_to_model(chat_request)
            for notice in fitted.notices:
                reply.apply(notice)

            settings = self.services.settings
            stream = self.services.router.stream(fitted.request)
            ticks = paced(
                stream, reply.apply, interval=settings.stream_interval_ms / 1000, heartbeat=settings.heartbeat_s
            )
            async with contextlib.aclosing(ticks):
                async for _ in ticks:
                    yield [shown_question, *reply.messages()]
            if reply.state in ("waiting", "streaming"):
                reply.stop()
        except ParleyError as error:
            logger.info("image question to %s failed: %s", model, error)
            reply.fail(error)
        yield [shown_question, *reply.messages()]

    def send_to_chat(self, path: str | None, question: str, request: gr.Request) -> dict[str, Any]:
        """Put the original file and the question into the chat input; the chat tab prepares it for its model."""
        if not path:
            raise user_error(translate("image.need_image", language_from_request(request)))
        return {"text": question, "files": [path]}


def render_report(report: ImageReport, max_side: int, language: str) -> str:
    """Render what the pipeline did as a Markdown table and a list of changes, in `language`."""

    def size(width_height: tuple[int, int]) -> str:
        return f"{width_height[0]} × {width_height[1]}"

    final_format = report.final_format
    if report.jpeg_quality is not None:
        final_format += f" ({translate('image.quality', language, quality=report.jpeg_quality)})"

    rows = [
        (translate("image.row.format", language), report.source_format, final_format),
        (translate("image.row.size", language), size(report.source_size), size(report.final_size)),
        (translate("image.row.bytes", language), _format_bytes(report.source_bytes), _format_bytes(report.final_bytes)),
        (translate("image.row.mode", language), report.source_mode, report.final_mode),
    ]
    lines = [
        f"| | {translate('image.col.original', language)} | {translate('image.col.sent', language)} |",
        "|---|---|---|",
        *(f"| {name} | {before} | {after} |" for name, before, after in rows),
        "",
        f"**{translate('image.changes', language)}**",
        "",
        *(f"- {change}" for change in describe_changes(report, max_side, language)),
        "",
        translate("image.prepared_in", language, ms=round(report.seconds * 1000)),
    ]
    return "\n".join(lines)


def describe_changes(report: ImageReport, max_side: int, language: str) -> list[str]:
    """List, in `language`, each change the pipeline made; re-encoding alone when there was nothing else."""
    changes: list[str] = []
    if report.rotated:
        changes.append(translate("image.change.rotated", language, orientation=report.orientation))
    if report.decode_scale > 1:
        changes.append(translate("image.change.draft", language, scale=report.decode_scale))
    if report.downscaled:
        changes.append(translate("image.change.downscaled", language, max_side=max_side))
    if report.mode_converted:
        changes.append(translate("image.change.mode", language, source=report.source_mode, final=report.final_mode))
    if report.colour_profile:
        changes.append(translate("image.change.profile", language, profile=escape_html(report.colour_profile)))
    if report.transparency == "kept" and report.final_format == "PNG":
        changes.append(translate("image.change.transparency_kept", language))
    elif report.transparency == "kept":
        changes.append(translate("image.change.transparency_flattened", language))
    elif report.transparency == "removed_opaque":
        changes.append(translate("image.change.opaque_alpha", language))
    if report.first_frame_only:
        changes.append(translate("image.change.first_frame", language))
    if report.metadata_removed:
        names = ", ".join(translate(f"image.meta.{name}", language) for name in report.metadata_removed)
        changes.append(translate("image.change.metadata", language, names=names))
    if not changes:
        changes.append(translate("image.change.reencoded", language, format=report.final_format))
    return changes


def _format_bytes(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / 1024 / 1024:.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size} B"


def _model_choices(services: UIServices, images: ImageService) -> tuple[list[tuple[str, str]], str | None]:
    """Vision models first, marked 👁; the default is the first vision model, else the chat default."""
    infos = services.router.models()
    ordered = sorted(infos, key=lambda info: not info.capabilities.vision)
    choices = [(f"{info.name} 👁" if info.capabilities.vision else info.name, info.name) for info in ordered]
    vision = images.vision_models()
    if vision:
        return choices, vision[0]
    if services.settings.default_model:
        return choices, services.settings.default_model
    return choices, ordered[0].name if ordered else None


def build_image_tab(services: UIServices) -> ImageTab | None:
    """Render the Image tab in the current Blocks context and wire its events."""
    images = services.image_pipeline
    if not isinstance(images, ImageService):
        gr.Markdown(label("input.image_unsupported_here"))
        return None

    handlers = ImageHandlers(services, images)
    choices, default_model = _model_choices(services, images)
    prepared_state = gr.State(None)

    gr.Markdown(label("image.intro"))
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(
                label=label("image.upload"),
                file_types=IMAGE_EXTENSIONS,
                file_count="single",
                type="filepath",
                elem_id="parley-image-upload",
            )
            model = gr.Dropdown(
                choices=choices,
                value=default_model,
                label=label("image.model"),
                info=label("image.model_info"),
                elem_id="parley-image-model",
                interactive=True,
            )
            question = gr.Textbox(
                label=label("image.question"),
                placeholder=label("image.question_placeholder"),
                lines=2,
                elem_id="parley-image-question",
            )
            with gr.Row():
                ask = gr.Button(label("image.ask"), variant="primary", elem_id="parley-image-ask")
                chat_tab = services.chat_tab
                send = gr.Button(label("image.send_to_chat"), elem_id="parley-image-send") if chat_tab else None
        with gr.Column(scale=1):
            preview = gr.Image(
                label=label("image.preview"),
                type="filepath",
                interactive=False,
                elem_id="parley-image-preview",
                buttons=["download", "fullscreen"],
            )
            report = gr.Markdown(label=label("image.report"), elem_id="parley-image-report")
    answer = gr.Chatbot(
        label=label("image.answer"),
        elem_id="parley-image-answer",
        height=360,
        buttons=["copy"],
        sanitize_html=True,
        allow_tags=False,
    )

    # Prepare again whenever the file or the model (and so the limits) changes.
    for trigger in (upload.change, model.change):
        trigger(
            handlers.prepare,
            [upload, model],
            [preview, report, prepared_state],
            api_visibility="undocumented",
            concurrency_limit=services.settings.concurrency_limit,
            concurrency_id="image-prepare",
        )
    ask_inputs = [prepared_state, preview, question, model]
    limit = services.settings.concurrency_limit
    ask.click(handlers.ask, ask_inputs, [answer], api_name="ask_image", concurrency_limit=limit, concurrency_id="chat")
    question.submit(
        handlers.ask, ask_inputs, [answer], api_visibility="undocumented", concurrency_limit=limit, concurrency_id="chat"
    )
    if send is not None and chat_tab is not None:
        send.click(
            handlers.send_to_chat, [upload, question], [chat_tab.textbox], queue=False, api_visibility="undocumented"
        ).success(None, None, None, js=_SWITCH_TO_CHAT)

    return ImageTab(
        upload=upload,
        model=model,
        preview=preview,
        report=report,
        question=question,
        ask=ask,
        answer=answer,
        send_to_chat=send,
    )
