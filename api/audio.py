"""`POST /v1/audio/transcriptions`, compatible with OpenAI's transcription endpoint.

Multipart fields: `file` (required), `model`, `language`, `prompt`,
`response_format` (json, text, verbose_json, srt, vtt) and `temperature`.
The upload limit is `audio.max_upload_mb` (25 MB by default, as OpenAI's);
the recording length limit is `audio.max_seconds`. Errors use the shared
OpenAI error JSON of `api.errors`.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException

from api.openai_routes import ClientGone, read_body, until_disconnect
from api.services import api_services
from backends.errors import BadRequestError, InputTooLargeError, InvalidInputError, NotFoundError
from multimodal.speech_errors import AudioFileTooLargeError, SpeechModelUnavailableError
from multimodal.transcribe import TranscribeOptions, Transcriber, Transcript

logger = logging.getLogger(__name__)

router = APIRouter()

RESPONSE_FORMATS = ("json", "text", "verbose_json", "srt", "vtt")
# Model ids accepted besides the configured `audio.model`: OpenAI's, so
# clients written for OpenAI work unchanged.
MODEL_ALIASES = ("whisper-1",)
# Not a status anyone receives: the client is gone (nginx logs the same case as 499).
_CLIENT_CLOSED = 499
# Room for the multipart boundaries and the small form fields around the file.
_FORM_OVERHEAD_BYTES = 64 * 1024


def transcriber_of(request: Request) -> Transcriber:
    transcriber: Transcriber | None = getattr(request.app.state, "parley_transcriber", None)
    if transcriber is None:
        raise SpeechModelUnavailableError(
            "Speech-to-text is not set up on this server", reason="no transcriber", param="model"
        )
    return transcriber


@router.post("/v1/audio/transcriptions")
async def create_transcription(request: Request) -> Response:
    services = api_services(request)
    services.authorize(request)
    transcriber = transcriber_of(request)
    settings = transcriber.settings

    form = await _read_form(request, settings.max_upload_bytes)
    try:
        audio = await _read_file(form, settings.max_upload_bytes)
    finally:
        # Starlette spools uploads over 1 MB to a temporary file; close it now that the bytes are read.
        await form.close()
    response_format = _field(form, "response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise BadRequestError(
            f"response_format {response_format!r} is not supported",
            fix=f"Use one of {', '.join(RESPONSE_FORMATS)}.",
            param="response_format",
        )
    _check_model(_field(form, "model"), settings.model)
    options = TranscribeOptions(
        language=_field(form, "language"),
        prompt=_field(form, "prompt"),
        timestamps=response_format in ("verbose_json", "srt", "vtt"),
        temperature=_temperature(_field(form, "temperature")),
    )
    _reject_unsupported(form)

    try:
        # A client that leaves cancels its job: dropped from the queue, or stopped at the next segment.
        transcript = await until_disconnect(request, transcriber.transcribe(audio, options))
    except InvalidInputError as exc:
        # Errors about the recording itself carry no param yet; the language error names its own.
        exc.params.setdefault("param", "file")
        raise
    except ClientGone:
        logger.info("client disconnected before its transcription of %d bytes finished; job cancelled", len(audio))
        return Response(status_code=_CLIENT_CLOSED)
    response = _render(transcript, response_format)
    if transcript.stopped_early:
        # The time budget ran out: the text covers only the start of the recording.
        response.headers["X-Parley-Stopped-Early"] = "true"
    return response


async def _read_form(request: Request, max_upload_bytes: int) -> FormData:
    """Read the whole multipart body under the upload limit, then parse it."""
    limit = max_upload_bytes + _FORM_OVERHEAD_BYTES
    try:
        body = await read_body(request, limit)
    except InputTooLargeError as exc:
        raise _file_too_large(limit, max_upload_bytes) from exc

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        return await Request(request.scope, replay).form(max_files=1, max_fields=32)
    except (MultiPartException, AssertionError, ValueError) as exc:
        # Starlette raises AssertionError when python-multipart is missing and
        # ValueError for some malformed bodies; both mean the form is unusable.
        raise BadRequestError(
            f"The request body is not a valid multipart form: {exc}",
            fix="Send the audio as multipart/form-data with a `file` field.",
            param="file",
        ) from exc


async def _read_file(form: FormData, max_upload_bytes: int) -> bytes:
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise BadRequestError(
            "The form has no `file` field with an audio file",
            fix="Attach the recording as the multipart field `file`.",
            param="file",
        )

    data = await upload.read()
    if len(data) > max_upload_bytes:
        raise _file_too_large(len(data), max_upload_bytes)
    return data


def _file_too_large(size: int, max_upload_bytes: int) -> AudioFileTooLargeError:
    return AudioFileTooLargeError(
        f"The audio file is {size / 1048576:.1f} MB or more, over the limit of "
        f"{max_upload_bytes / 1048576:.0f} MB (audio.max_upload_mb)",
        size_mb=f"{size / 1048576:.1f}",
        limit_mb=f"{max_upload_bytes / 1048576:.0f}",
        param="file",
    )


def _field(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is None or isinstance(value, UploadFile):
        return None
    return value.strip() or None


def _check_model(model: str | None, configured: str) -> None:
    # The model field is optional here; OpenAI requires it, so SDKs always send one.
    if model is None or model in MODEL_ALIASES or model == configured:
        return
    accepted = ", ".join((*MODEL_ALIASES, configured))
    raise NotFoundError(
        f"The speech model {model!r} is not served here",
        fix=f"Use one of: {accepted}.",
        param="model",
        models=accepted,
    )


def _temperature(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        temperature = float(value)
    except ValueError:
        temperature = math.nan
    if not 0.0 <= temperature <= 1.0:
        raise BadRequestError(
            f"temperature {value!r} is not a number between 0 and 1", fix="Send a temperature from 0 to 1.", param="temperature"
        )
    # 0 is OpenAI's default and means "decide automatically"; Parley then uses its fallback temperatures.
    return temperature or None


def _reject_unsupported(form: FormData) -> None:
    """Reject the options Parley does not implement, instead of silently ignoring them."""
    granularities = form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities")
    if any(value != "segment" for value in granularities):
        raise BadRequestError(
            "Word timestamps are not supported", fix="Leave out timestamp_granularities or use segment.", param="timestamp_granularities"
        )
    if (_field(form, "stream") or "false").lower() not in ("false", "0"):
        raise BadRequestError("Streamed transcriptions are not supported", fix="Leave out stream.", param="stream")


def _render(transcript: Transcript, response_format: str) -> Response:
    if response_format == "text":
        return PlainTextResponse(transcript.text + "\n")
    if response_format == "srt":
        return PlainTextResponse(_subtitles(transcript, srt=True), media_type="application/x-subrip")
    if response_format == "vtt":
        return PlainTextResponse(_subtitles(transcript, srt=False), media_type="text/vtt")

    usage = {"type": "duration", "seconds": math.ceil(transcript.duration)}
    if response_format == "json":
        return JSONResponse({"text": transcript.text, "usage": usage})
    return JSONResponse(
        {
            "task": "transcribe",
            # NOTE: a language code ("en"); OpenAI writes the English name ("english") here.
            "language": transcript.language,
            "duration": round(transcript.duration, 3),
            "text": transcript.text,
            "segments": [
                {
                    "id": index,
                    "seek": 0,
                    "start": round(segment.start, 3),
                    "end": round(segment.end, 3),
                    "text": segment.text,
                    "tokens": list(segment.tokens),
                    "temperature": segment.temperature,
                    "avg_logprob": segment.avg_logprob,
                    "compression_ratio": segment.compression_ratio,
                    "no_speech_prob": segment.no_speech_prob,
                }
                for index, segment in enumerate(transcript.segments)
            ],
            "usage": usage,
            "x_parley": {
                "language_probability": transcript.language_probability,
                "processing_seconds": round(transcript.processing_seconds, 3),
                "stopped_early": transcript.stopped_early,
            },
        }
    )


def _subtitles(transcript: Transcript, *, srt: bool) -> str:
    blocks = [] if srt else ["WEBVTT", ""]
    for index, segment in enumerate(transcript.segments, start=1):
        start = _timestamp(segment.start, srt=srt)
        end = _timestamp(segment.end, srt=srt)
        if srt:
            blocks.append(str(index))
        blocks.extend((f"{start} --> {end}", segment.text, ""))
    return "\n".join(blocks)


def _timestamp(seconds: float, *, srt: bool) -> str:
    milliseconds = round(seconds * 1000)
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    whole, milliseconds = divmod(milliseconds, 1000)
    separator = "," if srt else "."
    return f"{hours:02d}:{minutes:02d}:{whole:02d}{separator}{milliseconds:03d}"

