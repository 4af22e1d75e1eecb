"""Decode the JSON a client sends to Parley's APIs, rejecting what would fail later.

The HTTP API (`api.openai_request`) and the WebSocket API (`backends.ws_protocol`)
both decode client JSON here, so the two reject the same inputs with a 400
(`BadRequestError`) instead of failing deep inside the model layer with a 500:

- text that is not JSON or not UTF-8;
- arrays or objects nested deeper than the decoder can follow;
- an integer with more digits than Python converts (4300 by default, see
  `sys.get_int_max_str_digits`);
- a lone UTF-16 surrogate (`"\\ud800"` without its pair). JSON lets a string
  escape one, but it is not a Unicode character, so it cannot be encoded as
  UTF-8 for the upstream, a cache key or a log line.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from typing import Any

from backends.errors import BadRequestError

# Any UTF-16 surrogate code point: a decoded str contains one only where the JSON
# escaped half of a pair, since json.loads joins a valid pair into one character.
_SURROGATE = re.compile("[\ud800-\udfff]")


def decode_json(raw: str | bytes, subject: str) -> Any:
    """Decode `raw`; raises BadRequestError. Pass the result to `check_unicode` next.

    The check is separate so that a caller can first read what it needs to
    address its error, such as the request id of a WebSocket frame.
    `subject` names the input in messages, such as "the request body".
    """
    try:
        data = json.loads(raw)
    except RecursionError as exc:
        raise BadRequestError(
            f"{subject} is not valid JSON for Parley: it nests arrays or objects too deeply to parse",
            fix="Send a flat chat request: messages with text and image_url parts.",
        ) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequestError(
            f"{subject} is not valid JSON: {exc}",
            fix=f"Send {subject} as one JSON object, encoded as UTF-8.",
        ) from exc
    except ValueError as exc:
        # json.loads raises a plain ValueError only for an integer over Python's digit limit.
        limit = sys.get_int_max_str_digits()
        raise BadRequestError(
            f"{subject} contains an integer with more than {limit} digits",
            fix="Send integers within the documented range of each field, such as a 64-bit seed.",
        ) from exc
    return data


def check_unicode(data: Any) -> None:
    """Reject a string anywhere in decoded JSON that contains a lone surrogate, naming its field."""
    # An explicit stack, not recursion: json.loads accepts nesting up to about Python's
    # recursion limit, so the walk must not depend on how deep its caller's stack is.
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if has_lone_surrogate(value):
                raise _lone_surrogate(path)
        elif isinstance(value, dict):
            for key, item in value.items():
                if has_lone_surrogate(key):
                    raise _lone_surrogate((*path, key))
                stack.append((item, (*path, key)))
        elif isinstance(value, list):
            stack.extend((item, (*path, index)) for index, item in enumerate(value))


def has_lone_surrogate(text: str) -> bool:
    # isascii() first: it is much faster, and base64 image data is all ASCII.
    return not text.isascii() and _SURROGATE.search(text) is not None


def field_path(location: Sequence[str | int]) -> str:
    """Format a location in a request like `messages[1].content[0].text`, as OpenAI names a `param`."""
    path = ""
    for item in location:
        if isinstance(item, int):
            path += f"[{item}]"
        else:
            path += f".{item}" if path else item
    return path


def _lone_surrogate(path: tuple[str | int, ...]) -> BadRequestError:
    # The key itself may be the bad string, so it is shown escaped.
    param = field_path(path).encode("ascii", "backslashreplace").decode("ascii") or "the top-level value"
    return BadRequestError(
        f"{param} contains a lone UTF-16 surrogate (an escape such as \\ud800 without its pair), which is not valid Unicode text",
        fix="Send valid UTF-8 text: escape a character outside the BMP as a surrogate pair, or send it unescaped.",
        param=param,
    )
