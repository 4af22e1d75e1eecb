"""The Voice tab, and speech input in the Chat tab's textbox.

The Voice tab records or uploads a clip, transcribes it in the chosen
language (the page language by default), shows the transcript with the
detected language and timing for editing, and sends it to the chat. The
last recordings of the session stay in a list to replay and resend.

`attach_voice_input()` lets the chat textbox take a recording: an audio
file that arrives in its value is transcribed and replaced by the
transcript, which is sent at once when "send right after transcribing" is
ticked. While a request waits, the user sees its queue position.
"""

from __future__ import annotations

import logging
import mimetypes
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from backends.errors import ParleyError
from multimodal.transcribe import UNSPACED_LANGUAGES, TranscribeOptions, Transcriber, Transcript, TranscriptionStatus
from ui.i18n import CHINESE, label, language_from_request, translate, translate_error, user_error
from ui.services import UIServices

logger = logging.getLogger(__name__)

# Choices of the language control; "ui" follows the page language.
LANGUAGE_CHOICES = ("ui", "auto", "zh", "en")
# Recordings kept per browser session for replay and resending.
MAX_RECENT = 5
AUDIO_EXTENSIONS = (".wav", ".mp3", ".m4a", ".ogg", ".oga", ".opus", ".webm", ".flac", ".aac", ".mp4")

_SWITCH_TO_CHAT = "() => { document.querySelector('#parley-tab-chat-button')?.click(); }"


def whisper_language(choice: str, page_language: str) -> str | None:
    """Map the language control's value to a Whisper code, or None for detection."""
    if choice == "ui":
        return "zh" if page_language == CHINESE else "en"
    if choice == "auto":
        return None
    return choice


def is_audio_file(path: str) -> bool:
    mime, _ = mimetypes.guess_type(path)
    return (mime is not None and mime.startswith("audio/")) or Path(path).suffix.lower() in AUDIO_EXTENSIONS


def split_attachments(value: Any) -> tuple[list[Any], list[str]]:
    """Return the file paths of a chat textbox value and, of those, the audio files."""
    files = [item.get("path") if isinstance(item, dict) else item for item in (value or {}).get("files") or []]
    audio = [str(path) for path in files if path and is_audio_file(str(path))]
    return files, audio


def require_audio(value: Any) -> None:
    """Stop the event chain, without a message, when a chat textbox value has no audio file."""
    _, audio = split_attachments(value)
    if not audio:
        raise gr.Error("no audio file attached", visible=False, print_exception=False)


def status_text(status: TranscriptionStatus, language: str) -> str:
    if status.state == "queued":
        return translate("voice.status.queued", language, position=status.position)
    return translate(f"voice.status.{status.state}", language)


def summary_text(transcript: Transcript, language: str, *, language_set: bool = False) -> str:
    """Format the line under the transcript: language, audio length and processing time.

    A language that was set rather than detected is shown without Whisper's
    detection probability, which is meaningless then.
    """
    figures = {"duration": f"{transcript.duration:.1f}", "seconds": f"{transcript.processing_seconds:.1f}"}
    if language_set:
        text = translate("voice.status.done_set", language, code=transcript.language, **figures)
    else:
        probability = f"{transcript.language_probability:.0%}"
        text = translate("voice.status.done", language, detected=transcript.language, probability=probability, **figures)
    if transcript.stopped_early:
        text += " " + translate("voice.status.stopped_early", language)
    return text


async def transcribe_with_status(
    transcriber: Transcriber, path: str, whisper_code: str | None, language: str
) -> AsyncIterator[str | Transcript]:
    """Yield translated status lines while the recording waits or runs, then the Transcript.

    A ParleyError becomes a gr.Error in the page language.
    """
    try:
        async for update in transcriber.transcribe_stream(path, TranscribeOptions(language=whisper_code)):
            if isinstance(update, Transcript):
                yield update
            else:
                yield status_text(update, language)
    except ParleyError as exc:
        logger.info("transcription of %s failed: %s", Path(path).name, exc)
        raise user_error(translate_error(exc, language)) from exc


@dataclass
class Recording:
    """A recording of this session, kept for replay and resending."""

    path: str
    transcript: str
    created: float

    def choice_label(self) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(self.created))
        preview = self.transcript if len(self.transcript) <= 40 else self.transcript[:39] + "…"
        return f"{clock} · {preview}"


class VoiceHandlers:
    def __init__(self, services: UIServices) -> None:
        self.services = services

    def transcriber(self, language: str) -> Transcriber:
        transcriber: Transcriber | None = self.services.transcriber
        if transcriber is None:
            raise user_error(translate("voice.unavailable", language))
        return transcriber

    async def transcribe(
        self, path: str | None, choice: str, recent: list[Recording] | None, request: gr.Request
    ) -> AsyncIterator[tuple[Any, Any, Any, Any]]:
        """Transcribe the Voice tab's recording; yields (status, transcript, recent, recent picker)."""
        language = language_from_request(request)
        if not path:
            raise user_error(translate("voice.need_audio", language))
        recent = list(recent or [])

        whisper_code = whisper_language(choice, language)
        updates = transcribe_with_status(self.transcriber(language), path, whisper_code, language)
        try:
            async for update in updates:
                if isinstance(update, str):
                    yield update, gr.skip(), gr.skip(), gr.skip()
                    continue
                recent = [Recording(path, update.text, time.time()), *recent][:MAX_RECENT]
                picker = gr.update(choices=[(item.choice_label(), index) for index, item in enumerate(recent)], value=None)
                yield summary_text(update, language, language_set=whisper_code is not None), update.text, recent, picker
        except gr.Error as error:
            # Show the error in place of the progress line, and clear the transcript so that
            # "Send to chat" cannot send the previous recording's text.
            yield str(error.message), "", gr.skip(), gr.skip()
            raise

    def replay(self, index: int | None, recent: list[Recording] | None) -> tuple[Any, Any]:
        """Load a recent recording and its transcript back into the player and the editor."""
        if index is None or not recent or not 0 <= index < len(recent):
            return gr.skip(), gr.skip()
        chosen = recent[index]
        return chosen.path, chosen.transcript

    def to_chat_input(self, transcript: str, request: gr.Request) -> dict[str, Any]:
        if not transcript.strip():
            raise user_error(translate("voice.need_text", language_from_request(request)))
        return {"text": transcript.strip(), "files": []}

    async def chat_audio(
        self,
        value: Any,
        choice: str,
        autosend: bool,
        history: list[dict[str, Any]] | None,
        model: str,
        system_prompt: str,
        temperature: float,
        top_p: float,
        max_tokens: float,
        request: gr.Request,
    ) -> AsyncIterator[tuple[Any, Any]]:
        """Replace an audio file in the chat textbox by its transcript; send it when autosend is on.

        Yields (chat textbox, chatbot). Runs after `require_audio` found an
        audio file in the box, and returns at once if the box no longer has any.
        """
        files, audio = split_attachments(value)
        if not audio or self.services.transcriber is None:
            yield gr.skip(), gr.skip()
            return

        # Only props change while waiting: a new value would fire this handler again.
        language = language_from_request(request)
        text = str(value.get("text") or "")
        transcripts: list[Transcript] = []
        try:
            for path in audio:
                code = whisper_language(choice, language)
                async for update in transcribe_with_status(self.transcriber(language), path, code, language):
                    if isinstance(update, str):
                        yield gr.update(placeholder=update, interactive=False), gr.skip()
                    else:
                        transcripts.append(update)
        except gr.Error:
            # Drop the recording that failed, so the message can still be sent.
            others = [path for path in files if path and str(path) not in audio]
            yield gr.update(value={"text": text, "files": others}, placeholder=label("chat.placeholder"), interactive=True), gr.skip()
            raise

        # Chinese and Japanese transcripts join without a space, like their words.
        joined = text.strip()
        for transcript in transcripts:
            separator = "" if not joined or transcript.language in UNSPACED_LANGUAGES else " "
            joined = f"{joined}{separator}{transcript.text}"
        remaining = [path for path in files if path and str(path) not in audio]
        message = {"text": joined, "files": remaining}
        restored = gr.update(value=message, placeholder=label("chat.placeholder"), interactive=True)
        chat_tab = self.services.chat_tab
        if not autosend or chat_tab is None:
            yield restored, gr.skip()
            return

        yield restored, gr.skip()
        async for chatbot, textbox in chat_tab.handlers.chat(
            message, history, model, system_prompt, temperature, top_p, max_tokens, request
        ):
            yield textbox, chatbot


@dataclass
class VoiceTab:
    """The Voice tab's components, for tests."""

    audio: gr.Audio
    language: gr.Radio
    transcribe: gr.Button
    status: gr.Markdown
    transcript: gr.Textbox
    send: gr.Button | None
    recent: gr.Dropdown
    autosend: gr.Checkbox


def build_voice_tab(services: UIServices) -> VoiceTab:
    """Render the Voice tab in the current Blocks context and wire its events."""
    handlers = VoiceHandlers(services)
    chat_tab = services.chat_tab
    recent_state = gr.State([])

    with gr.Row():
        with gr.Column(scale=1):
            audio = gr.Audio(
                sources=["microphone", "upload"],
                type="filepath",
                label=label("voice.audio"),
                elem_id="parley-voice-audio",
            )
            language = gr.Radio(
                choices=[(label(f"voice.language.{choice}"), choice) for choice in LANGUAGE_CHOICES],
                value="ui",
                label=label("voice.language"),
                elem_id="parley-voice-language",
            )
            transcribe = gr.Button(label("voice.transcribe"), variant="primary", elem_id="parley-voice-transcribe")
            autosend = gr.Checkbox(value=False, label=label("voice.autosend"), elem_id="parley-voice-autosend")
        with gr.Column(scale=1):
            status = gr.Markdown(elem_id="parley-voice-status")
            transcript = gr.Textbox(label=label("voice.transcript"), lines=4, interactive=True, elem_id="parley-voice-transcript")
            send = gr.Button(label("voice.send"), elem_id="parley-voice-send") if chat_tab is not None else None
            recent = gr.Dropdown(
                choices=[], value=None, label=label("voice.recent"), interactive=True, elem_id="parley-voice-recent"
            )

    limit = services.settings.concurrency_limit
    outputs = [status, transcript, recent_state, recent]
    inputs = [audio, language, recent_state]
    # A finished recording or an upload is transcribed at once. One listener for
    # all three triggers, so a Transcribe click while that run is still going is
    # ignored instead of running it again (and showing any error twice).
    gr.on(
        [transcribe.click, audio.stop_recording, audio.upload],
        handlers.transcribe,
        inputs,
        outputs,
        api_name="transcribe",
        trigger_mode="once",
        concurrency_limit=limit,
        concurrency_id="voice",
    )
    recent.select(handlers.replay, [recent, recent_state], [audio, transcript], queue=False, api_visibility="undocumented")

    if chat_tab is not None and send is not None:
        send.click(
            handlers.to_chat_input, [transcript], [chat_tab.textbox], queue=False, api_visibility="undocumented"
        ).success(None, None, None, js=_SWITCH_TO_CHAT)
        attach_voice_input(chat_tab, handlers, language, autosend)

    return VoiceTab(audio, language, transcribe, status, transcript, send, recent, autosend)


def attach_voice_input(chat_tab: Any, handlers: VoiceHandlers, language: gr.Radio, autosend: gr.Checkbox) -> None:
    """Let the chat textbox record or take audio files and turn them into text.

    `chat_tab` is the `ui.chat_tab.ChatTab`. Its textbox declares the
    microphone and the audio file types when it is created, because Gradio
    rebuilds a component from its constructor arguments on every update and
    would drop attributes set here.
    """
    textbox = chat_tab.textbox

    request_inputs = [chat_tab.model, chat_tab.system_prompt, *chat_tab.sampling.components()]

    # Typing must not start a queued event. Gradio 6.31 can close a session's
    # event stream when one event completes just as the next one joins, and
    # the Send that follows the last keystroke then never shows its result.
    # So a request outside the queue looks for audio on each change, and only
    # when it finds some does the queued transcription start.
    textbox.change(
        require_audio,
        [textbox],
        None,
        queue=False,
        show_progress="hidden",
        api_visibility="undocumented",
    ).success(
        handlers.chat_audio,
        [textbox, language, autosend, chat_tab.chatbot, *request_inputs],
        [textbox, chat_tab.chatbot],
        api_visibility="undocumented",
        trigger_mode="once",
        show_progress="hidden",
        concurrency_limit=handlers.services.settings.concurrency_limit,
        concurrency_id="chat",
    )
