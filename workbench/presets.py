"""Scenario presets: shipped in assets/presets.toml, overridable in the config, saved by users.

A preset is a named set of sampling parameters plus a system prompt. The
shipped file is read once at start-up. `[presets.overrides.<id>]` tables in
the config change single fields of a shipped preset or add new ones. Presets
that users save go to a JSON file in the data directory and survive restarts.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import ConfigDict, Field, StringConstraints, ValidationError

from backends.settings import StrictModel
from backends.types import Capabilities, SamplingParams
from workbench.errors import PresetFileError, PresetNameError, PresetNotFoundError, PresetSaveError, PresetValueError

logger = logging.getLogger(__name__)

SHIPPED_PRESETS = Path(__file__).resolve().parents[1] / "assets" / "presets.toml"

# The sampling fields a preset sets, in the order the UI shows them.
SAMPLING_FIELDS = ("temperature", "top_p", "max_tokens", "presence_penalty", "frequency_penalty", "seed")

# Names a user preset may not take: the UI uses them for "settings changed by hand".
RESERVED_NAMES = frozenset({"custom", "自定义"})

USER_FILE_VERSION = 1

PresetId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]{1,64}$")]


class LocalizedText(StrictModel):
    """A short text in both UI languages."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    en: str = Field(min_length=1, max_length=300)
    zh_cn: str = Field(alias="zh-CN", min_length=1, max_length=300)

    def get(self, language: str) -> str:
        return self.zh_cn if language.lower().startswith("zh") else self.en


class Preset(StrictModel):
    """A named scenario: sampling parameters, a system prompt and when to use it.

    None means the preset leaves the parameter to the model's default.
    """

    label: LocalizedText
    description: LocalizedText
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, le=65536)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = Field(default=None, ge=0, lt=2**32)
    system_prompt: str = Field(default="", max_length=20000)

    def params(self) -> SamplingParams:
        return SamplingParams(**{name: getattr(self, name) for name in SAMPLING_FIELDS})


class PresetOverride(StrictModel):
    """Fields a config file changes in a shipped preset; a new id must set label and description."""

    label: LocalizedText | None = None
    description: LocalizedText | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    system_prompt: str | None = None


class PresetsSettings(StrictModel):
    """The `[presets]` config section."""

    file: Path | None = Field(default=None, description="A presets TOML file that replaces the shipped one.")
    data_dir: Path = Field(default=Path("data"), description="Directory for presets users save.")
    overrides: dict[PresetId, PresetOverride] = Field(default_factory=dict)

    @property
    def user_file(self) -> Path:
        return self.data_dir / "user_presets.json"


class _PresetFile(StrictModel):
    presets: dict[PresetId, Preset] = Field(min_length=1)


class _UserPresetFile(StrictModel):
    version: int = USER_FILE_VERSION
    presets: dict[str, Preset] = Field(default_factory=dict)


def describe_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """Render pydantic errors as "key.path: message (got value)", one per line."""
    lines = []
    for error in exc.errors():
        key = _key_path(prefix, error["loc"])
        got = f" (got {error['input']!r})" if error["type"] not in ("missing", "extra_forbidden") else ""
        lines.append(f"{key}: {error['msg']}{got}")
    return "; ".join(lines)


def _key_path(prefix: str, loc: tuple[int | str, ...]) -> str:
    # Pydantic marks an invalid dict key with a trailing "[key]"; the key itself is what to name.
    parts = [str(part) for part in (prefix, *loc) if part != "" and part != "[key]"]
    return ".".join(parts)


def _first_key(exc: ValidationError, prefix: str = "") -> str:
    return _key_path(prefix, exc.errors()[0]["loc"])


def load_preset_file(path: Path) -> dict[str, Preset]:
    """Read and validate a presets TOML file; raises PresetFileError naming the file and key."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PresetFileError(f"cannot read presets file {path}: {exc.strerror}", file=str(path), key_path="") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PresetFileError(f"presets file {path} is not valid TOML: {exc}", file=str(path), key_path="") from exc

    try:
        return dict(_PresetFile.model_validate(raw).presets)
    except ValidationError as exc:
        raise PresetFileError(
            f"presets file {path} is invalid: {describe_validation_error(exc)}",
            file=str(path),
            key_path=_first_key(exc),
        ) from exc


def apply_overrides(presets: Mapping[str, Preset], overrides: Mapping[str, PresetOverride]) -> dict[str, Preset]:
    """Merge config overrides into presets; raises PresetFileError naming the config key at fault."""
    merged = dict(presets)
    for preset_id, override in overrides.items():
        changes = override.model_dump(exclude_none=True)
        base = merged[preset_id].model_dump() if preset_id in merged else {}
        prefix = f"presets.overrides.{preset_id}"
        try:
            merged[preset_id] = Preset.model_validate({**base, **changes})
        except ValidationError as exc:
            raise PresetFileError(
                f"config override {prefix} is invalid: {describe_validation_error(exc, prefix)}",
                file="config",
                key_path=_first_key(exc, prefix),
            ) from exc
    return merged


def split_ignored(params: SamplingParams, capabilities: Capabilities) -> tuple[SamplingParams, tuple[str, ...]]:
    """Drop the parameters a model ignores or rejects; return the rest and the names dropped.

    Only parameters the caller set count as dropped, so a UI can say
    "deepseek-reasoner ignores temperature, top_p: not sent".
    """
    values = params.as_dict()
    dropped = tuple(name for name in SAMPLING_FIELDS if name in capabilities.ignored_params and name in values)
    kept = {name: getattr(params, name) for name in (*SAMPLING_FIELDS, "stop") if name not in dropped}
    return SamplingParams(**kept), dropped


def write_atomically(path: Path, text: str) -> None:
    """Write a file through a temporary file and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    try:
        with handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


class PresetStore:
    """Shipped and overridden presets (read-only) plus the presets users save (persisted).

    Safe to call from Gradio's worker threads: changes to user presets are
    serialised by a lock and written atomically.
    """

    def __init__(self, builtin: Mapping[str, Preset], user_file: Path) -> None:
        self._builtin = dict(builtin)
        self._user_file = user_file
        self._lock = threading.Lock()
        self._user = self._load_user_file()

    @classmethod
    def from_settings(cls, settings: PresetsSettings) -> PresetStore:
        presets = load_preset_file(settings.file or SHIPPED_PRESETS)
        return cls(apply_overrides(presets, settings.overrides), settings.user_file)

    def _load_user_file(self) -> dict[str, Preset]:
        if not self._user_file.exists():
            return {}

        try:
            raw = json.loads(self._user_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PresetFileError(
                f"saved presets file {self._user_file} cannot be read as JSON: {exc}",
                file=str(self._user_file),
                key_path="",
            ) from exc

        try:
            presets = dict(_UserPresetFile.model_validate(raw).presets)
        except ValidationError as exc:
            raise PresetFileError(
                f"saved presets file {self._user_file} is invalid: {describe_validation_error(exc)}",
                file=str(self._user_file),
                key_path=_first_key(exc),
            ) from exc
        logger.info("loaded %d saved presets from %s", len(presets), self._user_file)
        return presets

    def all(self) -> dict[str, Preset]:
        """Shipped presets first, then the ones users saved."""
        with self._lock:
            return {**self._builtin, **self._user}

    def get(self, preset_id: str) -> Preset:
        found = self.all().get(preset_id)
        if found is None:
            raise PresetNotFoundError(f"preset {preset_id!r} does not exist", name=preset_id)
        return found

    def is_saved_by_user(self, preset_id: str) -> bool:
        with self._lock:
            return preset_id in self._user

    def choices(self, language: str) -> list[tuple[str, str]]:
        """(label, id) pairs for a dropdown, labels in the given language."""
        return [(preset.label.get(language), preset_id) for preset_id, preset in self.all().items()]

    def save(self, name: str, values: Mapping[str, Any]) -> str:
        """Save or replace a user preset under `name` and persist it; return the preset id.

        `values` contains the sampling fields and `system_prompt`; the label and
        description are made from the name.
        """
        name = self._check_name(name)
        fields = {key: values.get(key) for key in (*SAMPLING_FIELDS, "system_prompt") if values.get(key) is not None}
        document = {
            "label": {"en": name, "zh-CN": name},
            "description": {"en": "Saved by a user.", "zh-CN": "用户保存的预设。"},
            **fields,
        }
        try:
            preset = Preset.model_validate(document)
        except ValidationError as exc:
            raise PresetValueError(f"preset {name!r} has invalid values: {describe_validation_error(exc)}", name=name) from exc

        with self._lock:
            updated = {**self._user, name: preset}
            self._write(updated)
            self._user = updated
        logger.info("saved user preset %r", name)
        return name

    def delete(self, name: str) -> None:
        with self._lock:
            if name not in self._user:
                raise PresetNotFoundError(f"no saved preset named {name!r}", name=name)
            updated = {key: value for key, value in self._user.items() if key != name}
            self._write(updated)
            self._user = updated
        logger.info("deleted user preset %r", name)

    def _check_name(self, name: str) -> str:
        name = " ".join(name.split())
        if not 1 <= len(name) <= 64 or not name.isprintable():
            raise PresetNameError(f"preset name {name!r} must be 1 to 64 printable characters", name=name)

        taken = {key.casefold() for key in self._builtin}
        taken |= {preset.label.en.casefold() for preset in self._builtin.values()}
        taken |= {preset.label.zh_cn.casefold() for preset in self._builtin.values()}
        if name.casefold() in taken or name.casefold() in RESERVED_NAMES:
            raise PresetNameError(
                f"preset name {name!r} is already used by a shipped preset", name=name, shipped_name=name
            )
        return name

    def _write(self, presets: Mapping[str, Preset]) -> None:
        document = {
            "version": USER_FILE_VERSION,
            "presets": {key: preset.model_dump(by_alias=True, exclude_none=True) for key, preset in presets.items()},
        }
        try:
            write_atomically(self._user_file, json.dumps(document, ensure_ascii=False, indent=2) + "\n")
        except OSError as exc:
            logger.error("cannot write saved presets to %s: %s", self._user_file, exc)
            raise PresetSaveError(
                f"cannot write saved presets file {self._user_file}: {exc.strerror or exc}",
                file=str(self._user_file),
                key_path="",
            ) from exc
