"""Bearer-key authentication for the HTTP and WebSocket API.

Keys come from the environment variable named by `server.api_keys_env`
(comma-separated). With the variable unset the API is open, which suits the
default of listening on 127.0.0.1 only. A variable that is set but contains
no key (empty, or only commas and spaces) stops start-up, since it most likely
meant to close the API.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from backends.errors import AuthError, ConfigError


class ApiKeyError(AuthError):
    """The key a client sent to Parley itself is missing or wrong: 401, unlike an upstream's AuthError."""

    http_status = 401


class ApiKeys:
    """The accepted bearer keys; the repr shows how many there are, never the keys."""

    def __init__(self, keys: list[str], env_name: str) -> None:
        self._keys = tuple(key.encode() for key in keys)
        self.env_name = env_name

    @classmethod
    def from_env(cls, env: Mapping[str, str], env_name: str) -> ApiKeys:
        """Read the keys; raises ConfigError when the variable is set but contains no key."""
        raw = env.get(env_name)
        if raw is None:
            return cls([], env_name)

        keys = [key.strip() for key in raw.split(",") if key.strip()]
        if not keys:
            raise ConfigError(
                f"{env_name} is set but contains no API key (value {raw!r})",
                fix=f"Set {env_name} to one or more comma-separated keys, or unset it to leave the API open.",
            )
        return cls(keys, env_name)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    @property
    def count(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"ApiKeys({len(self._keys)} keys from ${self.env_name})"

    def accepts(self, presented: str | None) -> bool:
        """Check a key in constant time per configured key; always True when auth is off."""
        if not self._keys:
            return True
        if not presented:
            return False

        candidate = presented.encode()
        matched = False
        # Compare with every key so the time taken does not tell which one matched.
        for key in self._keys:
            matched |= hmac.compare_digest(candidate, key)
        return matched

    def check(self, presented: str | None) -> None:
        """Raise ApiKeyError unless the key is accepted."""
        if self.accepts(presented):
            return
        what = "is missing" if not presented else "is not valid"
        raise ApiKeyError(
            f"the API key {what}",
            fix="Send the header 'Authorization: Bearer <key>' with a key configured for this Parley server.",
        )


def bearer_token(header: str | None) -> str | None:
    """Extract the key from an `Authorization: Bearer <key>` header value."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None
