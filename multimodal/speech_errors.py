"""Errors of the speech input path.

Each class has a stable `code`; the UI translates it through the
"error.<code>" entries of `ui.i18n.STRINGS`, formatted with the error's
`params`, so a Chinese user reads the reason in Chinese. `str(error)` stays
English for logs and API clients.
"""

from __future__ import annotations

from backends.errors import ConfigError, InputTooLargeError, InvalidInputError, OverloadedError


class AudioEmptyError(InvalidInputError):
    code = "audio_empty"
    fix = "Record again, or upload a recording that is not empty."


class AudioCorruptError(InvalidInputError):
    code = "audio_corrupt"
    fix = "Upload the recording again, or convert it to WAV, MP3, M4A, Ogg or WebM."


class AudioTruncatedError(AudioCorruptError):
    code = "audio_truncated"
    fix = "The file looks cut off; upload the whole recording again."


class AudioTooLongError(InputTooLargeError):
    code = "audio_too_long"
    fix = "Send a shorter recording, or raise audio.max_seconds in the config."


class AudioFileTooLargeError(InputTooLargeError):
    code = "audio_file_too_large"
    fix = "Send a smaller file, or raise audio.max_upload_mb in the config."


class NoSpeechError(InvalidInputError):
    code = "no_speech"
    http_status = 422
    fix = "Speak closer to the microphone and record again."


class UnsupportedLanguageError(InvalidInputError):
    code = "unsupported_language"
    fix = "Pick a language code the model supports, such as zh or en, or leave it empty for detection."


class SpeechModelUnavailableError(ConfigError):
    code = "speech_model_unavailable"
    http_status = 503
    fix = "Check audio.model in the config and the server log, then start Parley again."


class TranscriptionQueueFullError(OverloadedError):
    code = "speech_queue_full"
    fix = "Many recordings are waiting; try again in a minute."
