"""The TOML config: schema, loader and the built-in defaults used without a file.

`load_config()` reads one TOML file into an `AppConfig`. Each section is a
`StrictModel`, so an unknown key, a wrong type or a missing value stops
start-up with a `ConfigError` that names the key path, the file and the fix.
A `[[backends]]` table is validated against the `Settings` class of its
`kind` (see `backends.registry`).

Secrets are not stored here: a section names the environment variable that
contains a key (`api_key_env = "DEEPSEEK_API_KEY"`) and the backend reads it at start.

To add a section, add a `StrictModel` subclass and one field with a default to
`AppConfig`; the loader and its error messages need no change.
"""

from __future__ import annotations

import os
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, Field, PrivateAttr, SerializeAsAny, ValidationError, field_validator, model_validator

from backends.errors import ConfigError
from backends.layers.fallback import expand_chains
from backends.layers.settings import ResilienceSettings
from backends.registry import settings_class
from backends.request_json import field_path
from backends.settings import BackendSettings, StrictModel
from multimodal.audio_settings import AudioSettings
from multimodal.images import ImageSettings
from ui.settings import UISettings
from workbench.batch import BatchSettings
from workbench.presets import PresetsSettings

CONFIG_ENV = "PARLEY_CONFIG"
EXAMPLE_CONFIG = "assets/parley.example.toml"

DEEPSEEK_BASE_URL = "https://api.deepseek.com"
OPENAI_BASE_URL = "https://api.openai.com/v1"
# DeepSeek's reasoner accepts these parameters but ignores them.
DEEPSEEK_REASONER_IGNORED = ["temperature", "top_p", "presence_penalty", "frequency_penalty"]


class ServerSettings(StrictModel):
    """The `[server]` section: where Parley listens and the limits of its API."""

    host: str = "127.0.0.1"
    port: int = Field(default=7860, ge=1, le=65535)
    max_prompt_chars: int = Field(
        default=200_000, gt=0, description="Characters of text over all messages of one request."
    )
    max_body_bytes: int = Field(
        default=32 * 1024 * 1024, gt=0, description="Bytes of one HTTP request body or WebSocket message."
    )
    ws_max_in_flight: int = Field(
        default=32, gt=0, description="Requests one /ws/chat connection may have in flight at once."
    )
    ws_auth_timeout: float = Field(
        default=30.0, gt=0, description="Seconds a /ws/chat client has to send its auth message when keys are set."
    )
    api_keys_env: str = Field(
        default="PARLEY_API_KEYS",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Environment variable with comma-separated bearer keys; unset or empty means no auth.",
    )
    ui_user: str = Field(
        default="parley",
        min_length=1,
        pattern=r"^\S+$",
        description="User name of the browser UI's login; the login is on only when ui_password_env is set.",
    )
    ui_password_env: str = Field(
        default="PARLEY_UI_PASSWORD",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Environment variable with the browser UI's password; unset or empty means no login.",
    )
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed to call the API from a browser.")
    worker_threads: int | None = Field(
        default=None, gt=0, description="Threads for CPU-bound work (local model, Whisper, images); default: CPU count."
    )
    canned_reply_for_api: bool = Field(
        default=False,
        description="Let HTTP and WebSocket API clients get the canned reply when every model fails, "
        "instead of the error and its status; the browser UI always may.",
    )


class AppConfig(StrictModel):
    """The whole config file, one field per section."""

    server: ServerSettings = Field(default_factory=ServerSettings)
    # Each entry is an instance of the `Settings` class of its kind, built by
    # the loader before this model validates the list.
    backends: list[SerializeAsAny[BackendSettings]] = Field(default_factory=list)
    resilience: ResilienceSettings = Field(default_factory=ResilienceSettings)
    presets: PresetsSettings = Field(default_factory=PresetsSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    ui: UISettings = Field(default_factory=UISettings)
    images: ImageSettings = Field(default_factory=ImageSettings)
    audio: AudioSettings = Field(default_factory=AudioSettings)

    _source: str = PrivateAttr(default="built-in defaults")

    @property
    def source(self) -> str:
        """The file this config was read from, or "built-in defaults"."""
        return self._source

    @field_validator("backends")
    @classmethod
    def _check_names_unique(cls, backends: list[BackendSettings]) -> list[BackendSettings]:
        if not any(backend.models for backend in backends):
            raise ValueError("no backend serves a model; add a [[backends.models]] table with a name")

        # Every mistake across backends goes into one message, so one start-up shows them all.
        problems: list[str] = []
        backend_names: set[str] = set()
        owners: dict[str, str] = {}
        for backend in backends:
            if backend.name in backend_names:
                problems.append(f"backend name {backend.name!r} is used twice; give each backend its own name")
            backend_names.add(backend.name)

            for model in backend.models:
                if model.name in owners:
                    problems.append(
                        f"model name {model.name!r} is served by both {owners[model.name]!r} and "
                        f"{backend.name!r}; rename one of them (set `upstream` to keep the id sent upstream)"
                    )
                else:
                    owners[model.name] = backend.name

        unknown_fallbacks = False
        for backend in backends:
            for model in backend.models:
                unknown = [name for name in model.fallback if name not in owners]
                if unknown:
                    unknown_fallbacks = True
                    problems.append(
                        f"model {model.name!r} falls back to {', '.join(map(repr, unknown))}, which no backend "
                        f"serves; configured models: {', '.join(sorted(owners))}"
                    )

        if not unknown_fallbacks:
            # The router expands these chains again when it is built. Expanding them here lets a loop error name the file.
            fallbacks = {model.name: model.fallback for backend in backends for model in backend.models}
            try:
                expand_chains(fallbacks, owners)
            except ConfigError as exc:
                problems.append(f"{exc.detail}. {exc.fix}")
        if problems:
            raise ValueError("; and ".join(problems))
        return backends

    @model_validator(mode="after")
    def _check_default_model(self) -> AppConfig:
        default = self.ui.default_model
        # No backends: their tables were invalid and are reported on their own.
        if default is not None and self.backends and default not in self.model_names():
            raise ValueError(
                f"ui.default_model is {default!r}, which no backend serves; configured models: "
                f"{', '.join(self.model_names())}. Set it to one of them, or remove it to pick the first"
            )
        return self

    def model_names(self) -> list[str]:
        return [model.name for backend in self.backends for model in backend.models]

    def secret_env_names(self) -> list[str]:
        """List the environment variables this config reads secrets from: backend keys, Parley's keys and UI password, Redis."""
        names = [self.server.api_keys_env, self.server.ui_password_env]
        for backend in self.backends:
            # Only the kinds that talk to a server have api_key_env.
            key_env = getattr(backend, "api_key_env", None)
            if isinstance(key_env, str):
                names.append(key_env)
        if self.resilience.redis_password_env:
            names.append(self.resilience.redis_password_env)
        return names

    def secret_values(self, env: Mapping[str, str]) -> frozenset[str]:
        """Return the values of every secret this config resolves, for masking in upstream error text.

        A variable may hold several comma-separated keys (server.api_keys_env),
        so each part counts, as does the password in resilience.redis_url.
        """
        values: set[str] = set()
        for name in self.secret_env_names():
            raw = env.get(name) or ""
            values.add(raw.strip())
            values.update(part.strip() for part in raw.split(","))
        redis_url = self.resilience.redis_url
        if redis_url:
            password = urlsplit(redis_url).password
            if password:
                values.add(unquote(password))
        values.discard("")
        return frozenset(values)


def resolve_config_path(argument: str | None, env: Mapping[str, str]) -> Path | None:
    """Pick the config file: the `--config` argument wins over `PARLEY_CONFIG`."""
    chosen = argument or env.get(CONFIG_ENV) or None
    return Path(chosen) if chosen else None


def load_config(path: Path | None, env: Mapping[str, str] | None = None) -> AppConfig:
    """Read and validate the config file, or build the defaults when `path` is None.

    A file without `[[backends]]` tables gets the default backends, so a file
    that only sets `[server]` options still starts with a model.
    """
    env = os.environ if env is None else env
    if path is None:
        return parse_config({}, source="built-in defaults", env=env)

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {str(path)!r}: {exc.strerror or exc}",
            fix=f"Check the path given by --config or {CONFIG_ENV}; {EXAMPLE_CONFIG} is a starting point.",
        ) from exc

    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid TOML: {exc}",
            fix="Fix the syntax at that line; strings need quotes and tables look like [server].",
        ) from exc
    return parse_config(raw, source=str(path), env=env)


def parse_config(raw: Mapping[str, Any], *, source: str, env: Mapping[str, str]) -> AppConfig:
    """Validate parsed TOML; `source` names the file in error messages.

    The one ConfigError raised lists every mistake found: those of each
    `[[backends]]` table and those of the other sections.
    """
    problems = _Problems(source)
    data = dict(raw)
    tables = data.get("backends")
    if tables is None:
        tables = default_backend_tables(env)
    elif not isinstance(tables, list):
        problems.add("backends must be an array of tables", fix="Write each backend as its own [[backends]] table.")
        tables = []
    backends = [_parse_backend(table, index, problems) for index, table in enumerate(tables)]

    if problems:
        # Check the other sections too. Checks that span backends (names, fallbacks,
        # ui.default_model) wait until every table is valid.
        data.pop("backends", None)
    else:
        data["backends"] = backends
    try:
        config = AppConfig.model_validate(data)
    except ValidationError as exc:
        problems.add_validation_error(exc, AppConfig, prefix=())
    if problems:
        raise problems.error()

    config._source = source
    return config


def default_backend_tables(env: Mapping[str, str]) -> list[dict[str, Any]]:
    """Return the backends used without `[[backends]]` tables, chosen by which API keys are set.

    The local model is always there; DeepSeek joins when DEEPSEEK_API_KEY is
    set and an OpenAI-compatible server when OPENAI_API_KEY or OPENAI_BASE_URL is.
    """
    tables: list[dict[str, Any]] = [
        {"name": "local", "kind": "llama_cpp", "models": [{"name": "smollm2"}]},
    ]

    if env.get("DEEPSEEK_API_KEY"):
        tables.append(
            {
                "name": "deepseek",
                "kind": "openai",
                "base_url": DEEPSEEK_BASE_URL,
                "api_key_env": "DEEPSEEK_API_KEY",
                # A paid API is better served by falling back at once than by
                # waiting for a second first-token timeout.
                "retry_first_token_timeout": False,
                "models": [
                    {"name": "deepseek-chat", "max_context": 65536},
                    {
                        "name": "deepseek-reasoner",
                        "reasoning": True,
                        "max_context": 65536,
                        "ignored_params": list(DEEPSEEK_REASONER_IGNORED),
                    },
                ],
            }
        )

    if env.get("OPENAI_API_KEY") or env.get("OPENAI_BASE_URL"):
        names = [name.strip() for name in env.get("OPENAI_MODELS", "").split(",") if name.strip()]
        tables.append(
            {
                "name": "openai",
                "kind": "openai",
                "base_url": env.get("OPENAI_BASE_URL") or OPENAI_BASE_URL,
                "api_key_env": "OPENAI_API_KEY",
                "models": [{"name": name} for name in names or ["gpt-4o-mini"]],
            }
        )
    return tables


def _parse_backend(table: Any, index: int, problems: _Problems) -> BackendSettings | None:
    """Validate one `[[backends]]` table against the settings of its kind; None after adding its problems."""
    where = f"backends[{index}]"
    if not isinstance(table, dict):
        problems.add(f"{where} must be a table", fix=f"Write {where} as a [[backends]] table.")
        return None

    kind = table.get("kind")
    if not isinstance(kind, str):
        problems.add(
            f"{where}.kind is missing",
            fix=f'Add kind = "openai", "llama_cpp", "websocket" or "scripted" to {where}.',
        )
        return None
    try:
        settings_type = settings_class(kind)
    except ConfigError as exc:
        problems.add(f"{where}.kind: {exc.detail}", fix=f"For {where}.kind, {exc.fix[:1].lower()}{exc.fix[1:]}")
        return None
    except ImportError as exc:
        problems.add(
            f"{where}.kind: backend kind {kind!r} cannot be loaded: {exc}",
            fix=f"Install Parley with its dependencies (make install), or remove {where}.",
        )
        return None

    try:
        return settings_type.model_validate(table)
    except ValidationError as exc:
        problems.add_validation_error(exc, settings_type, prefix=("backends", index))
        return None


class _Problems:
    """Errors found in one config file, collected so that one ConfigError lists them all."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []
        self.fixes: list[str] = []

    def __bool__(self) -> bool:
        return bool(self.problems)

    def add(self, problem: str, *, fix: str | None = None) -> None:
        self.problems.append(problem)
        if fix:
            self.fixes.append(fix)

    def add_validation_error(self, exc: ValidationError, root: type[BaseModel], *, prefix: Sequence[str | int]) -> None:
        """Add each of pydantic's errors, named by its key path below `prefix`."""
        for error in exc.errors():
            location = tuple(error["loc"])
            path = field_path((*prefix, *location))
            kind = error["type"]

            if kind == "extra_forbidden":
                allowed = _keys_at(root, location[:-1])
                fix = f"Remove or rename {path}; valid keys there: {', '.join(allowed)}." if allowed else None
                self.add(f"unknown key {path}", fix=fix)
            elif kind == "missing":
                self.add(f"missing required key {path}", fix=f"Add {path} to that table.")
            else:
                message = str(error["msg"]).removeprefix("Value error, ")
                # A model validator's error has no key path; its message names the keys itself.
                where = f"{path}: " if path else ""
                self.add(f"{where}{message}{describe_input(error.get('input'))}")

    def error(self) -> ConfigError:
        fixes = [*self.fixes, f"Fix {self.source} and start again; {EXAMPLE_CONFIG} documents every option."]
        return ConfigError(f"invalid config in {self.source}: {'; '.join(self.problems)}", fix=" ".join(fixes))


def describe_input(value: Any) -> str:
    """Return " (got VALUE)" for a scalar input, cut to 80 characters, and "" for a table or list."""
    if isinstance(value, dict | list):
        return ""
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f" (got {text})"


def _keys_at(root: type[BaseModel], location: Sequence[str | int]) -> list[str]:
    """List the field names of the model found at `location` below `root`, if any."""
    current: Any = root
    for item in location:
        if isinstance(item, int):
            current = _item_type(current)
        elif isinstance(current, type) and issubclass(current, BaseModel) and item in current.model_fields:
            current = current.model_fields[item].annotation
        else:
            return []
        current = _unwrap_optional(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(current.model_fields)
    return []


def _item_type(annotation: Any) -> Any:
    args = typing.get_args(annotation)
    return args[0] if args else None


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation
