"""The browser UI's login: Gradio's auth on the page and its API, the password from the environment only."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import gradio_client.exceptions
import httpx
import pytest
from gradio_client import Client

import app
from backends.errors import ConfigError
from config import ServerSettings
from tests.ui_support import scripted_config, serve_parley
from ui.login import UILogin, hide_api_info_on_login_page, is_loopback, warn_if_ui_open

PASSWORD = "correct-horse-battery-42"
ENV = {"PARLEY_UI_PASSWORD": PASSWORD}

# Gradio routes that describe the app, run an event, upload a file or read one.
GUARDED_ROUTES = [
    ("GET", "/config"),
    ("GET", "/gradio_api/info"),
    ("GET", "/gradio_api/openapi.json"),
    ("POST", "/gradio_api/queue/join"),
    ("GET", "/gradio_api/queue/data?session_hash=probe"),
    ("POST", "/gradio_api/call/chat"),
    ("POST", "/gradio_api/run/chat"),
    ("POST", "/gradio_api/upload"),
    ("GET", "/gradio_api/file=/etc/hostname"),
]


def chat_args(text: str) -> tuple[object, ...]:
    return ({"text": text, "files": []}, [], "scripted-echo", "", 0.7, 1.0, 64)


@pytest.fixture(scope="module")
def guarded_url() -> Iterator[str]:
    with serve_parley(scripted_config(), env=ENV) as url:
        yield url


@pytest.mark.parametrize(("method", "path"), GUARDED_ROUTES)
def test_gradio_route_without_login_is_401(guarded_url: str, method: str, path: str) -> None:
    response = httpx.request(method, guarded_url + path, json={} if method == "POST" else None, timeout=10)

    assert response.status_code == 401
    assert response.json()["detail"]["error"] == "Not authenticated"


def test_login_page_shows_no_api_or_password(guarded_url: str) -> None:
    page = httpx.get(guarded_url + "/", timeout=10)

    assert page.status_code == 200
    assert '"auth_required":true' in page.text
    assert 'window.gradio_api_info = {"named_endpoints":{},"unnamed_endpoints":{}};' in page.text
    assert "scripted-echo" not in page.text
    assert "/chat" not in page.text
    assert PASSWORD not in page.text
    assert int(page.headers["content-length"]) == len(page.content)


def test_client_without_login_is_rejected(guarded_url: str) -> None:
    with pytest.raises(gradio_client.exceptions.AuthenticationError):
        Client(guarded_url, verbose=False)


def test_client_with_wrong_password_is_rejected(guarded_url: str) -> None:
    with pytest.raises(ValueError, match="Could not login"):
        Client(guarded_url, auth=("parley", "wrong-password"), verbose=False)


def test_client_with_login_chats(guarded_url: str) -> None:
    client = Client(guarded_url, auth=("parley", PASSWORD), verbose=False)

    history = client.predict(*chat_args("hello there"), api_name="/chat")[0]

    assert history[1]["content"][0]["text"] == "hello there"
    assert "/chat" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]


def test_logged_in_page_has_config_but_no_password(guarded_url: str) -> None:
    with httpx.Client(base_url=guarded_url, timeout=10) as http:
        login = http.post("/login", data={"username": "parley", "password": PASSWORD})
        config = http.get("/config")
        page = http.get("/")

    assert login.status_code == 200
    assert config.status_code == 200
    assert PASSWORD not in config.text
    assert PASSWORD not in page.text
    assert "scripted-echo" in page.text


def test_api_keeps_its_own_keys_not_the_login(guarded_url: str) -> None:
    assert httpx.get(guarded_url + "/healthz", timeout=10).status_code == 200
    assert httpx.get(guarded_url + "/v1/models", timeout=10).status_code == 200


def test_user_name_comes_from_config() -> None:
    raw = {**scripted_config(), "server": {"ui_user": "alice", "ui_password_env": "MY_UI_SECRET"}}
    with serve_parley(raw, env={"MY_UI_SECRET": PASSWORD}) as url:
        with httpx.Client(base_url=url, timeout=10) as http:
            as_default_user = http.post("/login", data={"username": "parley", "password": PASSWORD})
            as_alice = http.post("/login", data={"username": "alice", "password": PASSWORD})

    assert as_default_user.status_code == 400
    assert as_alice.status_code == 200


def test_ui_without_password_is_open() -> None:
    with serve_parley(scripted_config(), env={}) as url:
        info = httpx.get(url + "/gradio_api/info", timeout=10)

    assert info.status_code == 200
    assert "/chat" in info.json()["named_endpoints"]


def test_password_stays_out_of_repr_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    login = UILogin.from_env(ENV, ServerSettings())

    with serve_parley(scripted_config(), env=ENV) as url:
        httpx.post(url + "/login", data={"username": "parley", "password": PASSWORD}, timeout=10)
        httpx.post(url + "/login", data={"username": "parley", "password": "wrong"}, timeout=10)

    assert login is not None
    assert PASSWORD not in repr(login)
    assert PASSWORD not in caplog.text
    assert "the browser UI requires a login as user 'parley'" in caplog.text


def test_unset_password_means_no_login() -> None:
    assert UILogin.from_env({}, ServerSettings()) is None


@pytest.mark.parametrize("value", ["", "   "])
def test_blank_password_stops_startup(value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        UILogin.from_env({"PARLEY_UI_PASSWORD": value}, ServerSettings())

    assert "PARLEY_UI_PASSWORD is set but empty" in str(raised.value)
    assert "unset it" in raised.value.fix


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True), ("::1", True), ("[::1]", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("parley.example", False)],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_open_ui_on_public_host_warns(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)

    warned = warn_if_ui_open("0.0.0.0", 7860, ServerSettings(), {})

    assert warned is True
    assert "http://0.0.0.0:7860 has no login" in caplog.text
    assert "anyone who can reach this port" in caplog.text
    assert "Set PARLEY_UI_PASSWORD" in caplog.text
    assert "listen on 127.0.0.1" in caplog.text


def test_no_warning_with_password_or_loopback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)

    assert warn_if_ui_open("0.0.0.0", 7860, ServerSettings(), ENV) is False
    assert warn_if_ui_open("127.0.0.1", 7860, ServerSettings(), {}) is False
    assert caplog.text == ""


def test_main_warns_before_serving_open_ui(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "parley.toml"
    path.write_text('[server]\nhost = "0.0.0.0"\n[[backends]]\nname = "s"\nkind = "scripted"\n[[backends.models]]\nname = "echo"\n')
    monkeypatch.delenv("PARLEY_UI_PASSWORD", raising=False)
    served: list[str] = []
    # Stop before binding the port: this test only needs the start-up log.
    monkeypatch.setattr(app.uvicorn, "run", lambda *args, **kwargs: served.append(kwargs["host"]))
    caplog.set_level(logging.WARNING)

    status = app.main(["--config", str(path)])

    assert status == 0
    assert served == ["0.0.0.0"]
    assert "has no login" in caplog.text


def test_api_info_is_hidden_on_login_page_only() -> None:
    api_info = b'<script>window.gradio_api_info = {"named_endpoints":{"/chat":{}}};</script>'
    login_page = b'<head><script>window.gradio_config = {"auth_required":true};</script>' + api_info + b"<script>x = 1;</script></head>"
    chat_page = b'<head><script>window.gradio_config = {"components":[]};</script>' + api_info + b"</head>"

    hidden = hide_api_info_on_login_page(login_page)

    assert b"/chat" not in hidden
    assert hidden.endswith(b'<script>window.gradio_api_info = {"named_endpoints":{},"unnamed_endpoints":{}};</script><script>x = 1;</script></head>')
    assert hide_api_info_on_login_page(chat_page) == chat_page
