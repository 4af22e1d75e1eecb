"""The Chat tab: a streaming conversation with one model.

Every reply comes from `Router.stream()`. The handlers are async
generators, so Stop (and a closed tab) reach them as CancelledError or
GeneratorExit, and `paced()` then closes the upstream stream. A reply that
fails or is stopped stays in the history with its state; the user's message
is never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from backends.errors import InvalidInputError, ParleyError
from backends.types import ChatRequest, ImagePart, Message, ModelInfo, Part, SamplingParams, TextPart
from ui.formatting import escape_html, text_block, unescape_html
from ui.history import FileRef, Turn, last_user_index, normalize_history
from ui.i18n import label, language_from_request, translate, user_error
from ui.reply import Reply
from ui.sampling import SamplingControls, build_sampling_controls, to_params
from ui.services import UIServices
from ui.streaming import StreamLoad, paced

logger = logging.getLogger(__name__)

History = list[dict[str, Any]]

# Replies cut short by Stop, kept until the Stop handler renders them; a
# closed tab leaves its entry behind, so the table is bounded.
_MAX_STOPPED_REPLIES = 1024

# From this many messages on, streamed updates come at most every 100 ms.
LONG_CHAT_MESSAGES = 50
LONG_CHAT_INTERVAL_S = 0.1


def model_choice_label(info: ModelInfo) -> str:
    """The model picker's label: name, backend and capability badges."""
    badges = ""
    if info.capabilities.vision:
        badges += "👁"
    if info.capabilities.reasoning:
        badges += "🧠"
    text = f"{info.name} · {info.backend}"
    return f"{text} {badges}" if badges else text


def _message_parts(message: Any) -> tuple[str, list[str]]:
    """Split a MultimodalTextbox value (or a plain string from an API client) into text and file paths."""
    if message is None:
        return "", []
    if isinstance(message, str):
        return message, []
    text = str(message.get("text") or "")
    paths: list[str] = []
    for item in message.get("files") or []:
        path = item.get("path") if isinstance(item, dict) else item
        if path:
            paths.append(str(path))
    return text, paths


def _is_text_file(path: str) -> bool:
    mime, _ = mimetypes.guess_type(path)
    return mime is not None and mime.startswith("text/")


@dataclass(frozen=True)
class ReplyOptions:
    """The values of the controls a reply is generated with."""

    model: str
    system_prompt: str
    params: SamplingParams

    @classmethod
    def of(cls, model: str, system_prompt: str | None, temperature: float, top_p: float, max_tokens: float) -> ReplyOptions:
        return cls(model=model, system_prompt=system_prompt or "", params=to_params(temperature, top_p, max_tokens))


class ChatHandlers:
    """The event handlers of the Chat tab, bound to the app's services."""

    def __init__(self, services: UIServices) -> None:
        self.services = services
        self.settings = services.settings
        self.load = StreamLoad(services.settings.max_updates_per_second)
        self._active: OrderedDict[str, Reply] = OrderedDict()

    # Input checks.

    def _read_input(self, message: Any, language: str) -> tuple[str, list[FileRef]]:
        """Return the message text and image files; raises gr.Error naming the limit or the fix."""
        text, paths = _message_parts(message)
        images: list[FileRef] = []
        for path in paths:
            # The textbox turns a long paste into a text file; read it back as text.
            if _is_text_file(path):
                limit = self.services.max_prompt_chars
                with open(path, encoding="utf-8", errors="replace") as handle:
                    pasted = handle.read(limit + 1)
                text = f"{text}\n\n{pasted}" if text else pasted
                continue
            if self.services.image_pipeline is None:
                raise user_error(translate("input.image_unsupported_here", language))
            images.append(FileRef(path=path, mime=mimetypes.guess_type(path)[0]))

        limit = self.services.max_prompt_chars
        if len(text) > limit:
            raise user_error(translate("input.too_long", language, chars=len(text), limit=limit))
        return text, images

    # Building the request.

    async def _image_part(self, ref: FileRef) -> ImagePart:
        """Read an attached image as it was uploaded; the image service prepares it later."""
        if self.services.image_pipeline is None:
            raise InvalidInputError(
                f"the conversation contains the image {Path(ref.path).name!r} but no image service is configured",
                fix="Remove the image or use the Image tab.",
            )
        try:
            data = await asyncio.to_thread(Path(ref.path).read_bytes)
        except OSError as exc:
            # A file gone from the upload cache becomes an empty image: the image
            # service leaves it out of earlier turns instead of failing each of them.
            logger.warning("cannot read the attached image %s: %s", ref.path, exc)
            data = b""
        return ImagePart.from_bytes(data, ref.mime or mimetypes.guess_type(ref.path)[0] or "application/octet-stream")

    async def _fit_images(self, chat_request: ChatRequest, reply: Reply) -> ChatRequest:
        """Let the image service prepare the images and apply the vision rules, showing its notices."""
        service = self.services.image_pipeline
        if service is None or not any(message.images for message in chat_request.messages):
            return chat_request
        fitted = await service.prepare_request(chat_request)
        for notice in fitted.notices:
            reply.apply(notice)
        if fitted.request.model != chat_request.model:
            reply.model = fitted.request.model
        fitted_request: ChatRequest = fitted.request
        return fitted_request

    async def _messages(self, turns: list[Turn], system_prompt: str) -> tuple[Message, ...]:
        messages: list[Message] = []
        if system_prompt and system_prompt.strip():
            messages.append(Message.text("system", system_prompt.strip()))
        for turn in turns:
            parts: list[Part] = [await self._image_part(ref) for ref in turn.files]
            if turn.text or not parts:
                parts.append(TextPart(turn.text))
            messages.append(Message(role=turn.role, parts=tuple(parts)))
        return tuple(messages)

    # Streaming one reply.

    async def _stream_reply(
        self,
        history: History,
        options: ReplyOptions,
        *,
        bypass_cache: bool,
        request: gr.Request | None,
    ) -> AsyncGenerator[History, None]:
        """Stream a reply to the conversation in `history`; yields history plus the reply so far."""
        model = options.model
        language = language_from_request(request)
        session = getattr(request, "session_hash", None) or ""
        reply = Reply(model=model, language=language)

        # Every update re-sends and diffs the whole history, so a long chat
        # gets at most 10 updates per second, and many replies at once get
        # fewer each (StreamLoad).
        least_interval = self.settings.stream_interval_ms / 1000
        if least_interval and len(history) >= LONG_CHAT_MESSAGES:
            least_interval = max(least_interval, LONG_CHAT_INTERVAL_S)
        stopped = False
        try:
            turns = normalize_history(history)
            if any(turn.files for turn in turns):
                # Reading and fitting images may take a while, so the waiting state shows first.
                # Without images, `paced()` sends the first update with the first token.
                yield history + reply.messages()
            chat_request = ChatRequest(
                messages=await self._messages(turns, options.system_prompt),
                model=model,
                params=options.params,
                bypass_cache=bypass_cache,
                user=getattr(request, "username", None) or None,
                language=language,
            )
            chat_request = await self._fit_images(chat_request, reply)
            self._active[session] = reply
            while len(self._active) > _MAX_STOPPED_REPLIES:
                self._active.popitem(last=False)

            stream = self.services.router.stream(chat_request)
            ticks = paced(
                stream,
                reply.apply,
                interval=lambda: self.load.interval(least_interval),
                heartbeat=self.settings.heartbeat_s,
                stop=reply.stop_requested,
            )
            with self.load.streaming():
                async with contextlib.aclosing(ticks):
                    async for _ in ticks:
                        yield history + reply.messages()
            if reply.stop_requested.is_set():
                logger.info("chat reply from %s stopped after %d deltas", model, reply.deltas)
            if reply.state in ("waiting", "streaming"):
                # Stop was pressed, or the stream ended without Finished and was cut short.
                reply.stop()
        except ParleyError as error:
            logger.info("chat reply from %s failed: %s", model, error)
            reply.fail(error)
        except (asyncio.CancelledError, GeneratorExit):
            stopped = True
            reply.stop()
            logger.info("chat reply from %s stopped after %d deltas", model, reply.deltas)
            raise
        finally:
            if not stopped and self._active.get(session) is reply:
                del self._active[session]
        yield history + reply.messages()

    # Event handlers.

    async def chat(
        self,
        message: Any,
        history: History | None,
        model: str,
        system_prompt: str,
        temperature: float,
        top_p: float,
        max_tokens: float,
        request: gr.Request,
    ) -> AsyncIterator[tuple[History, Any]]:
        """Send the message in the textbox and stream the reply."""
        history = list(history or [])
        language = language_from_request(request)
        text, images = self._read_input(message, language)
        if not text.strip() and not images:
            # An empty message sends nothing.
            yield history, gr.skip()
            return

        content: list[dict[str, Any]] = [{"type": "file", "file": {"path": ref.path, "mime_type": ref.mime}} for ref in images]
        if text:
            content.append(text_block(escape_html(text)))
        history.append({"role": "user", "content": content})

        cleared = {"text": "", "files": []}
        replies = self._stream_reply(history, ReplyOptions.of(model, system_prompt, temperature, top_p, max_tokens), bypass_cache=False, request=request)
        async with contextlib.aclosing(replies):
            async for updated in replies:
                yield updated, cleared

    async def regenerate(
        self,
        history: History | None,
        model: str,
        system_prompt: str,
        temperature: float,
        top_p: float,
        max_tokens: float,
        request: gr.Request,
    ) -> AsyncIterator[History]:
        """Replace the last reply with a fresh one, bypassing the cache."""
        history = list(history or [])
        index = last_user_index(history)
        if index is None:
            yield history
            return
        replies = self._stream_reply(history[: index + 1], ReplyOptions.of(model, system_prompt, temperature, top_p, max_tokens), bypass_cache=True, request=request)
        async with contextlib.aclosing(replies):
            async for updated in replies:
                yield updated

    async def edit(
        self,
        history: History | None,
        model: str,
        system_prompt: str,
        temperature: float,
        top_p: float,
        max_tokens: float,
        edit_data: gr.EditData,
        request: gr.Request,
    ) -> AsyncIterator[History]:
        """Replace an earlier user message with its edited text and stream a new reply to it."""
        history = list(history or [])
        index = edit_data.index[0] if isinstance(edit_data.index, (list, tuple)) else edit_data.index
        if not 0 <= index < len(history) or history[index].get("role") != "user":
            yield history
            return

        language = language_from_request(request)
        new_text = unescape_html(edit_data.value if isinstance(edit_data.value, str) else _message_parts(edit_data.value)[0])
        limit = self.services.max_prompt_chars
        if len(new_text) > limit:
            raise user_error(translate("input.too_long", language, chars=len(new_text), limit=limit))

        # Keep the message's files and replace its text. The edit box contains
        # the displayed text, with joiners where it showed tags and none in
        # what the user typed: `new_text` was unescaped above, escape it whole.
        kept = [block for block in history[index].get("content") or [] if isinstance(block, dict) and block.get("type") == "file"]
        edited = {"role": "user", "content": [*kept, text_block(escape_html(new_text))]}
        replies = self._stream_reply([*history[:index], edited], ReplyOptions.of(model, system_prompt, temperature, top_p, max_tokens), bypass_cache=False, request=request)
        async with contextlib.aclosing(replies):
            async for updated in replies:
                yield updated

    def undo(self, history: History | None, undo_data: gr.UndoData) -> tuple[History, dict[str, Any]]:
        """Remove the last exchange and put the user's message back into the textbox."""
        history = list(history or [])
        index = undo_data.index[0] if isinstance(undo_data.index, (list, tuple)) else undo_data.index
        if not 0 <= index < len(history):
            index = last_user_index(history) or 0
        turns = normalize_history(history[index : index + 1])
        restored = {"text": turns[0].text if turns else "", "files": [ref.path for ref in turns[0].files] if turns else []}
        return history[:index], restored

    async def stop(self, request: gr.Request) -> None:
        """Ask the session's running reply to stop; its own event then renders the stopped state.

        Raises an invisible gr.Error when it found a reply to stop, which
        skips the chained Gradio cancel. That cancel is only for a reply
        whose event has not started yet. Cancelling a running event races
        with its last output, and Gradio then leaves its "Error" overlay on
        the chat.
        """
        reply = self._active.get(getattr(request, "session_hash", None) or "")
        if reply is not None and reply.state in ("waiting", "streaming"):
            reply.stop_requested.set()
            raise gr.Error("the running reply is stopping", visible=False, print_exception=False)

    def mark_stopped(self, history: History | None, request: gr.Request) -> History:
        """Render the reply that Stop cut short with its "stopped" state and figures so far."""
        history = list(history or [])
        reply = self._active.pop(getattr(request, "session_hash", None) or "", None)
        index = last_user_index(history)
        if reply is None or index is None:
            return history
        reply.stop()
        return history[: index + 1] + reply.messages()

    def clear(self) -> tuple[History, dict[str, Any]]:
        return [], {"text": "", "files": []}


def _model_choices(services: UIServices) -> tuple[list[tuple[str, str]], str | None]:
    infos = services.router.models()
    choices = [(model_choice_label(info), info.name) for info in infos]
    names = [info.name for info in infos]
    default = services.settings.default_model
    if default not in names:
        default = names[0] if names else None
    return choices, default


@dataclass
class ChatTab:
    """The Chat tab's handlers and the components other tabs may extend (presets set `sampling`)."""

    handlers: ChatHandlers
    chatbot: gr.Chatbot
    textbox: gr.MultimodalTextbox
    model: gr.Dropdown
    system_prompt: gr.Textbox
    sampling: SamplingControls


def build_chat_tab(services: UIServices) -> ChatTab:
    """Render the Chat tab in the current Blocks context and wire its events."""
    handlers = ChatHandlers(services)
    settings = services.settings
    choices, default_model = _model_choices(services)

    with gr.Row():
        with gr.Column(scale=4):
            chatbot = gr.Chatbot(
                label=label("chat.chatbot"),
                elem_id="parley-chatbot",
                height=settings.chat_height,
                editable="user",
                buttons=["copy", "copy_all"],
                # Text is escaped before display; sanitizing stays on as a second guard.
                sanitize_html=True,
                allow_tags=False,
                feedback_options=None,
                group_consecutive_messages=True,
            )
            # Speech input (ui.voice_tab.attach_voice_input) needs audio files and the microphone.
            # They are declared here because Gradio rebuilds a component from its constructor
            # arguments on every update, so attributes changed later are lost on the server.
            voice_input = services.transcriber is not None
            with gr.Row():
                textbox = gr.MultimodalTextbox(
                    label=label("chat.input"),
                    show_label=False,
                    placeholder=label("chat.placeholder"),
                    elem_id="parley-input",
                    file_types=["image", "audio"] if voice_input else ["image"],
                    file_count="multiple",
                    sources=["upload", "microphone"] if voice_input else ["upload"],
                    submit_btn=True,
                    stop_btn=False,
                    # A longer paste would become a text file; let the length check name the limit instead.
                    max_plain_text_length=services.max_prompt_chars * 2,
                    scale=8,
                )
                stop = gr.Button(label("chat.stop"), variant="stop", elem_id="parley-stop", scale=1, min_width=80)
                clear = gr.Button(label("chat.clear"), elem_id="parley-clear", scale=1, min_width=80)
        with gr.Column(scale=1, min_width=260):
            model = gr.Dropdown(
                choices=choices,
                value=default_model,
                label=label("chat.model"),
                info=label("chat.model_legend"),
                elem_id="parley-model",
                interactive=True,
            )
            system_prompt = gr.Textbox(
                label=label("chat.system_prompt"),
                placeholder=label("chat.system_prompt_placeholder"),
                lines=3,
                elem_id="parley-system-prompt",
            )
            with gr.Accordion(label("chat.settings"), open=False, elem_id="parley-sampling"):
                sampling: SamplingControls = build_sampling_controls(settings)

    request_inputs = [model, system_prompt, *sampling.components()]
    limit = settings.concurrency_limit
    submit_event = textbox.submit(
        handlers.chat,
        [textbox, chatbot, *request_inputs],
        [chatbot, textbox],
        api_name="chat",
        concurrency_limit=limit,
        concurrency_id="chat",
        trigger_mode="once",
    )
    retry_event = chatbot.retry(
        handlers.regenerate,
        [chatbot, *request_inputs],
        [chatbot],
        api_name="regenerate",
        concurrency_limit=limit,
        concurrency_id="chat",
    )
    edit_event = chatbot.edit(
        handlers.edit,
        [chatbot, *request_inputs],
        [chatbot],
        api_name="edit",
        api_visibility="undocumented",
        concurrency_limit=limit,
        concurrency_id="chat",
    )
    running: list[Any] = [submit_event, retry_event, edit_event]
    # A running reply stops itself and renders its stopped state. Only a reply whose
    # event has not started is cancelled through Gradio. Cancel first, then mark the
    # reply: an output written to the chatbot while the cancelled event still owns it
    # leaves Gradio's "Error" overlay over the chat.
    stop.click(handlers.stop, None, None, queue=False, api_name="stop").success(
        None, None, None, cancels=running, queue=False, api_visibility="undocumented"
    ).then(handlers.mark_stopped, [chatbot], [chatbot], queue=False, api_visibility="undocumented")
    chatbot.undo(handlers.undo, [chatbot], [chatbot, textbox], queue=False, api_visibility="undocumented")
    clear.click(handlers.clear, None, [chatbot, textbox], cancels=running, queue=False, api_name="clear")
    # The Chatbot's own trash button empties it in the browser; stop the reply too.
    chatbot.clear(None, None, None, cancels=running, queue=False, api_visibility="undocumented")

    return ChatTab(
        handlers=handlers,
        chatbot=chatbot,
        textbox=textbox,
        model=model,
        system_prompt=system_prompt,
        sampling=sampling,
    )
