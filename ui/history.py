"""Read the Chatbot's history back into model messages.

The browser sends each message's content as a list of typed blocks
(`{"type": "text", "text": ...}`, `{"type": "file", "file": {"path": ...}}`);
a gradio_client caller may send a plain string, bare strings in a list, or
file dicts with a top-level "path". `normalize_history()` takes all of these.

Messages with a metadata title (the thinking block and the status block
under each reply) are UI only and never go back to the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from backends.errors import InvalidInputError
from backends.types import Role
from ui.formatting import unescape_html

_ROLES: tuple[Role, ...] = ("system", "user", "assistant")


@dataclass(frozen=True, slots=True)
class FileRef:
    """A file attached to a message: its path on the server and its MIME type if known."""

    path: str
    mime: str | None = None


@dataclass(frozen=True, slots=True)
class Turn:
    """One history message in model terms: original text (unescaped) and attached files."""

    role: Role
    text: str
    files: tuple[FileRef, ...] = ()


def is_ui_only(message: Mapping[str, Any]) -> bool:
    """Tell whether a Chatbot message is a thinking or status block rather than conversation."""
    metadata = message.get("metadata") or {}
    return bool(metadata.get("title"))


def _blocks(content: Any) -> Iterable[Any]:
    if content is None:
        return ()
    if isinstance(content, (str, Mapping)):
        return (content,)
    if isinstance(content, (list, tuple)):
        return content
    raise InvalidInputError(f"message content of type {type(content).__name__} is not text or a file", fix="Send text blocks or file blocks.")


def _file_ref(block: Mapping[str, Any]) -> FileRef | None:
    nested = block.get("file")
    inner: Mapping[str, Any] = nested if isinstance(nested, Mapping) else block
    path = inner.get("path")
    if not path:
        return None
    return FileRef(path=str(path), mime=inner.get("mime_type"))


def normalize_message(message: Any) -> Turn | None:
    """Turn one Chatbot message (browser or gradio_client form) into a Turn; None for UI-only blocks."""
    if hasattr(message, "role") and hasattr(message, "content") and not isinstance(message, Mapping):
        message = {"role": message.role, "content": message.content, "metadata": getattr(message, "metadata", None)}
    if not isinstance(message, Mapping):
        raise InvalidInputError(f"history item of type {type(message).__name__} is not a message", fix="Send messages as {role, content} objects.")
    if is_ui_only(message):
        return None

    role = message.get("role")
    if role not in _ROLES:
        raise InvalidInputError(f"message role {role!r} is not one of {', '.join(_ROLES)}", fix="Use the roles user, assistant or system.")

    texts: list[str] = []
    files: list[FileRef] = []
    for block in _blocks(message.get("content")):
        if isinstance(block, str):
            texts.append(block)
        elif isinstance(block, Mapping) and block.get("type", "text") == "text" and "text" in block:
            texts.append(str(block["text"]))
        elif isinstance(block, Mapping):
            ref = _file_ref(block)
            if ref is not None:
                files.append(ref)
        else:
            raise InvalidInputError(f"content block of type {type(block).__name__} is not text or a file", fix="Send text blocks or file blocks.")

    # The chat tab escapes HTML before display; user and assistant text comes back escaped.
    text = unescape_html("".join(texts))
    return Turn(role=role, text=text, files=tuple(files))


def normalize_history(history: Iterable[Any] | None) -> list[Turn]:
    """Turn a whole Chatbot history into Turns, dropping UI-only blocks."""
    turns: list[Turn] = []
    for message in history or ():
        turn = normalize_message(message)
        if turn is not None:
            turns.append(turn)
    return turns


def last_user_index(history: list[Any]) -> int | None:
    """Index of the last user message in a Chatbot history, or None."""
    for index in range(len(history) - 1, -1, -1):
        item = history[index]
        role = item.get("role") if isinstance(item, Mapping) else getattr(item, "role", None)
        if role == "user":
            return index
    return None
