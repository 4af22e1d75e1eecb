"""The TOML config loader: defaults, validation errors that name key and file, secrets."""

from __future__ import annotations

import logging
import re
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

import app
from backends.errors import ConfigError
from backends.registry import KIND_MODULES, BackendContext, settings_class
from config import AppConfig, load_config, resolve_config_path

SCRIPTED = """
[[backends]]
name = "script"
kind = "scripted"
[[backends.models]]
name = "scripted-echo"
"""


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "parley.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> str:
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    return str(caught.value)


def backend_by_name(config: AppConfig, name: str) -> dict[str, object]:
    for backend in config.backends:
        if backend.name == name:
            return backend.model_dump()
    raise AssertionError(f"no backend {name!r} in {[b.name for b in config.backends]}")


def test_defaults_without_keys_serve_local_model_only() -> None:
    config = load_config(None, env={})

    assert [(b.name, b.kind) for b in config.backends] == [("local", "llama_cpp")]
    assert config.model_names() == ["smollm2"]
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 7860
    assert config.server.max_prompt_chars == 200_000
    assert config.server.api_keys_env == "PARLEY_API_KEYS"
    assert config.source == "built-in defaults"


def test_defaults_with_deepseek_key_add_deepseek() -> None:
    pytest.importorskip("backends.openai_compat")

    config = load_config(None, env={"DEEPSEEK_API_KEY": "sk-test-deepseek"})

    deepseek = backend_by_name(config, "deepseek")
    assert deepseek["kind"] == "openai"
    assert deepseek["base_url"] == "https://api.deepseek.com"
    assert deepseek["api_key_env"] == "DEEPSEEK_API_KEY"
    models = {model["name"]: model for model in deepseek["models"]}  # type: ignore[attr-defined]
    assert sorted(models) == ["deepseek-chat", "deepseek-reasoner"]
    assert models["deepseek-reasoner"]["reasoning"] is True
    assert models["deepseek-chat"]["reasoning"] is False
    assert sorted(models["deepseek-reasoner"]["ignored_params"]) == [
        "frequency_penalty",
        "presence_penalty",
        "temperature",
        "top_p",
    ]
    assert config.model_names()[0] == "smollm2"


def test_defaults_with_openai_base_url_use_its_models() -> None:
    pytest.importorskip("backends.openai_compat")
    env = {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_MODELS": "alpha, beta,"}

    config = load_config(None, env=env)

    openai = backend_by_name(config, "openai")
    assert openai["base_url"] == "http://127.0.0.1:9/v1"
    assert [model["name"] for model in openai["models"]] == ["alpha", "beta"]  # type: ignore[attr-defined]
    assert "deepseek" not in [backend.name for backend in config.backends]


def test_defaults_with_openai_key() -> None:
    pytest.importorskip("backends.openai_compat")

    config = load_config(None, env={"OPENAI_API_KEY": "sk-test-openai"})

    openai = backend_by_name(config, "openai")
    assert openai["base_url"] == "https://api.openai.com/v1"
    assert [model["name"] for model in openai["models"]] == ["gpt-4o-mini"]  # type: ignore[attr-defined]


def test_file_with_backends_replaces_defaults(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[server]\nport = 8080\nmax_prompt_chars = 50\n" + SCRIPTED)

    config = load_config(path, env={"DEEPSEEK_API_KEY": "sk-ignored"})

    assert config.server.port == 8080
    assert config.server.max_prompt_chars == 50
    assert config.model_names() == ["scripted-echo"]
    assert config.source == str(path)


def test_file_without_backends_keeps_default_backends(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[server]\nport = 9000\n")

    config = load_config(path, env={})

    assert config.server.port == 9000
    assert config.model_names() == ["smollm2"]


def test_unknown_key_names_path_file_and_valid_keys(tmp_path: Path) -> None:
    message = load_error(tmp_path, SCRIPTED + "[backends.timeouts]\nconect = 3\n")

    assert "unknown key backends[0].timeouts.conect" in message
    assert str(tmp_path / "parley.toml") in message
    assert "connect" in message.split("valid keys there:")[1]


def test_unknown_server_key_is_rejected(tmp_path: Path) -> None:
    message = load_error(tmp_path, "[server]\nprot = 8080\n" + SCRIPTED)

    assert "unknown key server.prot" in message
    assert "port" in message


def test_unknown_top_level_section_is_rejected(tmp_path: Path) -> None:
    message = load_error(tmp_path, "[servre]\nport = 1\n" + SCRIPTED)

    assert "unknown key servre" in message


def test_wrong_type_names_key_and_value(tmp_path: Path) -> None:
    message = load_error(tmp_path, SCRIPTED + "[backends.timeouts]\nconnect = \"soon\"\n")

    assert "backends[0].timeouts.connect" in message
    assert "'soon'" in message


def test_out_of_range_port_is_rejected(tmp_path: Path) -> None:
    message = load_error(tmp_path, "[server]\nport = 70000\n" + SCRIPTED)

    assert "server.port" in message
    assert "70000" in message


def test_unknown_kind_lists_known_kinds(tmp_path: Path) -> None:
    message = load_error(tmp_path, '[[backends]]\nname = "x"\nkind = "telepathy"\n')

    assert "backends[0].kind" in message
    assert "'telepathy'" in message
    assert "llama_cpp, openai, scripted, websocket" in message


def test_missing_kind_is_named(tmp_path: Path) -> None:
    message = load_error(tmp_path, '[[backends]]\nname = "x"\n')

    assert "backends[0].kind is missing" in message


def test_missing_required_name_is_named(tmp_path: Path) -> None:
    message = load_error(tmp_path, '[[backends]]\nkind = "scripted"\n')

    assert "missing required key backends[0].name" in message


def test_missing_model_name_is_named(tmp_path: Path) -> None:
    message = load_error(tmp_path, '[[backends]]\nname = "s"\nkind = "scripted"\n[[backends.models]]\nvision = true\n')

    assert "missing required key backends[0].models[0].name" in message


def test_duplicate_model_names_across_backends(tmp_path: Path) -> None:
    text = SCRIPTED + SCRIPTED.replace('name = "script"', 'name = "script2"')

    message = load_error(tmp_path, text)

    assert "'scripted-echo'" in message
    assert "'script'" in message
    assert "'script2'" in message


def test_duplicate_backend_names(tmp_path: Path) -> None:
    text = SCRIPTED + SCRIPTED.replace("scripted-echo", "other")

    message = load_error(tmp_path, text)

    assert "backend name 'script' is used twice" in message


def test_fallback_to_unknown_model_is_rejected(tmp_path: Path) -> None:
    message = load_error(tmp_path, SCRIPTED + 'fallback = ["nowhere"]\n')

    assert "'nowhere'" in message
    assert "scripted-echo" in message


def test_fallback_loop_names_models_and_file(tmp_path: Path) -> None:
    models = '[[backends.models]]\nname = "first"\nfallback = ["second"]\n[[backends.models]]\nname = "second"\nfallback = ["first"]\n'
    message = load_error(tmp_path, '[[backends]]\nname = "script"\nkind = "scripted"\n' + models)

    assert "the fallback chain loops: first -> second -> first" in message
    assert "Remove 'first' from the fallback list of model 'second'" in message
    assert str(tmp_path / "parley.toml") in message


def test_default_model_not_served_is_rejected(tmp_path: Path) -> None:
    message = load_error(tmp_path, '[ui]\ndefault_model = "gpt-5"\n' + SCRIPTED)

    assert "ui.default_model is 'gpt-5', which no backend serves" in message
    assert "configured models: scripted-echo" in message
    assert str(tmp_path / "parley.toml") in message


def test_default_model_served_is_accepted(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[ui]\ndefault_model = "scripted-echo"\n' + SCRIPTED)

    assert load_config(path, env={}).ui.default_model == "scripted-echo"


def test_errors_of_every_table_are_reported_together(tmp_path: Path) -> None:
    text = (
        '[server]\nport = "abc"\n'
        + SCRIPTED
        + '[backends.timeouts]\nconnect = "ten"\n'
        + '[[backends]]\nname = "other"\n'
        + '[[backends]]\nname = "third"\nkind = "telepathy"\n'
    )

    message = load_error(tmp_path, text)

    assert "backends[0].timeouts.connect: Input should be a valid number" in message
    assert "(got 'ten')" in message
    assert "backends[1].kind is missing" in message
    assert "to backends[1]." in message
    assert "backends[2].kind: unknown backend kind 'telepathy'" in message
    assert "For backends[2].kind, use one of: llama_cpp, openai, scripted, websocket." in message
    assert "server.port: Input should be a valid integer" in message
    assert "(got 'abc')" in message
    assert message.count(str(tmp_path / "parley.toml")) == 2


def test_errors_of_one_section_are_reported_together(tmp_path: Path) -> None:
    message = load_error(tmp_path, '[server]\nport = "abc"\nhost = 5\nprot = 1\n' + SCRIPTED)

    assert "server.port: Input should be a valid integer" in message
    assert "server.host: Input should be a valid string (got 5)" in message
    assert "unknown key server.prot" in message


def test_ui_login_settings_default_and_checks(tmp_path: Path) -> None:
    config = load_config(None, env={})

    assert config.server.ui_user == "parley"
    assert config.server.ui_password_env == "PARLEY_UI_PASSWORD"
    assert "PARLEY_UI_PASSWORD" in config.secret_env_names()
    assert "server.ui_user" in load_error(tmp_path, '[server]\nui_user = "two words"\n' + SCRIPTED)
    assert "server.ui_password_env" in load_error(tmp_path, '[server]\nui_password_env = "not-a-name"\n' + SCRIPTED)


def test_invalid_toml_names_file_and_line(tmp_path: Path) -> None:
    message = load_error(tmp_path, "[server]\nport = = 3\n")

    assert "is not valid TOML" in message
    assert "line 2" in message


def test_missing_file_names_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.toml", env={})

    assert "absent.toml" in str(caught.value)
    assert "PARLEY_CONFIG" in str(caught.value)


def test_argument_wins_over_env_variable() -> None:
    env = {"PARLEY_CONFIG": "/from/env.toml"}

    assert resolve_config_path("/from/arg.toml", env) == Path("/from/arg.toml")
    assert resolve_config_path(None, env) == Path("/from/env.toml")
    assert resolve_config_path(None, {}) is None


def test_example_config_loads(tmp_path: Path) -> None:
    pytest.importorskip("backends.openai_compat")
    example = Path(__file__).resolve().parents[1] / "assets" / "parley.example.toml"

    config = load_config(example, env={})

    assert config.server.port == 7860
    assert len(config.model_names()) >= 2


def test_secret_stays_out_of_repr_and_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-secret-value-1234567890"
    text = SCRIPTED + '[server]\napi_keys_env = "MY_KEYS"\n'
    path = write_config(tmp_path, text)
    config = load_config(path, env={"MY_KEYS": secret})
    caplog.set_level(logging.DEBUG)

    built = app.build_app(config, context=BackendContext(env={"MY_KEYS": secret}))

    assert secret not in repr(config)
    assert secret not in repr(built.state.parley_api)
    assert secret not in caplog.text
    assert "MY_KEYS" in repr(built.state.parley_api.api_keys)


def test_main_reports_config_error_and_exits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, "[server]\nprot = 1\n")

    status = app.main(["--config", str(path)])

    assert status == 2
    error = capsys.readouterr().err
    assert "unknown key server.prot" in error
    assert str(path) in error


def _option_names(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[str]:
    """Collect the field names of `model` and of every section model nested in it."""
    if model in seen:
        return set()
    seen.add(model)
    names: set[str] = set()
    for name, field in model.model_fields.items():
        names.add(field.alias or name)
        pending = [field.annotation]
        while pending:
            annotation = pending.pop()
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                names |= _option_names(annotation, seen)
            pending.extend(typing.get_args(annotation))
    return names


def test_example_config_mentions_every_option() -> None:
    example = (Path(__file__).resolve().parents[1] / "assets" / "parley.example.toml").read_text(encoding="utf-8")
    seen: set[type[BaseModel]] = set()
    names = _option_names(AppConfig, seen)
    for kind in KIND_MODULES:
        names |= _option_names(settings_class(kind), seen)

    missing = sorted(name for name in names if not re.search(rf"(^|[\s#\[.]){re.escape(name)}\s*(=|\.|\])", example, re.MULTILINE))

    assert missing == []


def test_main_reports_presets_error_and_exits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "absent-presets.toml"
    path = write_config(tmp_path, f'[presets]\nfile = "{missing}"\n' + SCRIPTED)

    status = app.main(["--config", str(path)])

    assert status == 2
    assert "absent-presets.toml" in capsys.readouterr().err


@pytest.mark.parametrize(("tables", "n_ctx"), [(None, 2048), ([{"name": "local", "kind": "llama_cpp", "n_ctx": 1024}], 1024)])
async def test_local_model_reports_its_n_ctx_as_max_context(tables: list[dict[str, object]] | None, n_ctx: int) -> None:
    from backends.pipeline import build_router
    from config import parse_config

    config = parse_config({} if tables is None else {"backends": tables}, source="test", env={})
    router = build_router(config, BackendContext())
    try:
        infos = {info.name: info for info in router.models()}
    finally:
        await router.aclose()

    assert infos["smollm2"].capabilities.max_context == n_ctx
    assert backend_by_name(config, "local")["n_ctx"] == n_ctx


def test_local_model_max_context_other_than_n_ctx_is_rejected(tmp_path: Path) -> None:
    message = load_error(
        tmp_path,
        '[[backends]]\nname = "local"\nkind = "llama_cpp"\nn_ctx = 2048\n'
        '[[backends.models]]\nname = "smollm2"\nmax_context = 8192\n',
    )

    assert "'smollm2' sets 8192" in message
    assert "n_ctx 2048" in message


def test_mistakes_across_models_are_reported_together(tmp_path: Path) -> None:
    models = (
        '[[backends.models]]\nname = "first"\nfallback = ["nowhere"]\n'
        '[[backends.models]]\nname = "second"\nfallback = ["elsewhere"]\n'
        '[[backends.models]]\nname = "first"\n'
    )
    message = load_error(tmp_path, '[[backends]]\nname = "script"\nkind = "scripted"\n' + models)

    assert "'nowhere'" in message
    assert "'elsewhere'" in message
    assert "model name 'first' is served by both" in message
