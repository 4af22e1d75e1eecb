"""Masking of secrets in text that an upstream sends back to Parley.

Some servers and proxies repeat the request's Authorization header or the
key in their error bodies ("Incorrect API key provided: Bearer sk-...").
Backends pass every piece of upstream text through `Redactor.redact` where
they turn it into a `ParleyError`, so API responses, logs and the UI that
show the error never see the key.

Two things are masked: the exact value of every secret the config resolves
(see `AppConfig.secret_values`), and text shaped like a credential whatever
its value (a bearer token, an `sk-` key, `api_key=...`, a password in a URL).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"

# A shorter value would mask ordinary words and numbers (such as "401") and
# protects nothing, so it is left to the shape patterns.
MIN_SECRET_CHARS = 6

# Each pattern keeps its named group (scheme, name or user), if it has one, and masks the rest of the match.
_CREDENTIAL_SHAPES = re.compile(
    "|".join(
        (
            # An HTTP authorization value: "Bearer <token>", "Basic <base64>".
            # It ends before a trailing full stop, which belongs to the sentence.
            r"(?P<scheme>\b(?:bearer|basic|token)\s+)[A-Za-z0-9._~+/=-]{5,}[A-Za-z0-9_~+/=-]",
            # OpenAI-style keys: sk-..., sk-proj-..., sk-ant-...
            r"\bsk-[A-Za-z0-9_-]{6,}",
            # "api_key": "value", apikey=value, password: value
            r"(?P<name>\b(?:api[_-]?key|access[_-]?token|secret|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&]{4,}",
            # The password of a URL such as redis://user:password@host
            r"(?P<user>://[^/\s:@]*:)[^/\s@]+(?=@)",
        )
    ),
    re.IGNORECASE,
)


def _mask_shape(match: re.Match[str]) -> str:
    prefix = match.group("scheme") or match.group("name") or match.group("user") or ""
    return prefix + MASK


class Redactor:
    """Replaces known secret values and credential-shaped text with `MASK`."""

    __slots__ = ("_secrets",)

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = {value for value in secrets if len(value) >= MIN_SECRET_CHARS}
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = tuple(sorted(values, key=len, reverse=True))

    def __repr__(self) -> str:
        return f"Redactor({len(self._secrets)} secrets)"

    def with_secrets(self, secrets: Iterable[str]) -> Redactor:
        """Return a redactor that also masks `secrets`."""
        return Redactor((*self._secrets, *secrets))

    def redact(self, text: str) -> str:
        """Return `text` with every secret value and credential-shaped token replaced by `MASK`."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return _CREDENTIAL_SHAPES.sub(_mask_shape, text)
