"""The page: one gr.Blocks with a tab per feature, mounted at "/" on the app.

Tabs live in their own modules. A tab module that exists exposes
`build_<tab>_tab(services: UIServices) -> object`; `build_blocks()` calls it
inside the tab's `gr.Tab`. A module not (yet) in the tree is skipped, so
the page works with whatever tabs are present.

With a `UILogin` (see `ui.login`), Gradio's own login guards the page and
its API under /gradio_api.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import gradio as gr
from fastapi import FastAPI

from ui.browser_locale import ChineseLocaleMiddleware
from ui.chat_tab import build_chat_tab
from ui.i18n import I18N, label
from ui.login import UILogin, hide_api_info_on_login_page
from ui.page_rewrite import PageRewriteMiddleware
from ui.preset_picker import attach_to_chat_tab
from ui.services import UIServices
from ui.settings import UISettings

logger = logging.getLogger(__name__)

CSS_PATH = Path(__file__).resolve().parents[1] / "assets" / "parley.css"

# (tab label key, module, builder function), in page order after Chat.
OPTIONAL_TABS: tuple[tuple[str, str, str], ...] = (
    ("tab.voice", "ui.voice_tab", "build_voice_tab"),
    ("tab.image", "ui.image_tab", "build_image_tab"),
    ("tab.scenarios", "ui.scenarios_tab", "build_scenarios_tab"),
    ("tab.compare", "ui.compare_tab", "build_compare_tab"),
    ("tab.batch", "ui.batch_tab", "build_batch_tab"),
)


def _find_builder(module_name: str, function_name: str) -> object | None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only a missing tab module is skipped; a broken import inside it is a bug.
        if exc.name != module_name:
            raise
        return None
    builder = getattr(module, function_name, None)
    if builder is None:
        logger.warning("%s has no %s(); its tab is left out", module_name, function_name)
    return builder


# Gradio 6.31 runs at most `Blocks.max_threads` queued events at once (40 by
# default), whatever their concurrency limits, and uses the same number as its
# thread limit for sync handlers. These slots are for the other tabs' events.
OTHER_EVENT_SLOTS = 40


def queue_slots(settings: UISettings) -> int:
    """Return how many queued events may run at once: the chat's limit plus `OTHER_EVENT_SLOTS`.

    Without a chat limit, the queue's max size bounds the chat events instead.
    """
    chat_events = settings.concurrency_limit or settings.queue_max_size
    return chat_events + OTHER_EVENT_SLOTS


def build_blocks(services: UIServices) -> gr.Blocks:
    """Build the page with the Chat tab and every optional tab whose module exists."""
    with gr.Blocks(title="Parley", analytics_enabled=False, fill_height=False) as blocks:
        with gr.Tabs(elem_id="parley-tabs"):
            with gr.Tab(label("tab.chat"), id="chat", elem_id="parley-tab-chat"):
                chat = build_chat_tab(services)
                attach_to_chat_tab(chat, services)
                services.chat_tab = chat
            for key, module_name, function_name in OPTIONAL_TABS:
                builder = _find_builder(module_name, function_name)
                if builder is None or not callable(builder):
                    continue
                tab_id = key.removeprefix("tab.")
                with gr.Tab(label(key), id=tab_id, elem_id=f"parley-tab-{tab_id}"):
                    builder(services)
    return blocks


def mount_ui(app: FastAPI, services: UIServices, *, path: str = "/", login: UILogin | None = None) -> gr.Blocks:
    """Build the page, set up its queue and mount it on `app` at `path`.

    Run history and the monitoring dashboard are off (chats are private),
    the footer has no share or runs link, uploads are capped at
    `[ui] max_file_size_mb`, and the queue runs `queue_slots()` events at once.
    With `login`, the page and its Gradio API need that user name and password.
    """
    settings = services.settings
    blocks = build_blocks(services)
    app.add_middleware(ChineseLocaleMiddleware, path=path)
    if login:
        app.add_middleware(PageRewriteMiddleware, path=path, transform=hide_api_info_on_login_page)
        logger.info("the browser UI requires a login as user %r, with the password from %s", login.user, login.password_env)
    # Set before queue(), which sizes the queue's job slots from it.
    blocks.max_threads = queue_slots(settings)
    blocks.queue(default_concurrency_limit=settings.concurrency_limit, max_size=settings.queue_max_size)
    gr.mount_gradio_app(
        app,
        blocks,
        path=path,
        auth=[(login.user, login.password)] if login else None,
        i18n=I18N,
        max_file_size=int(settings.max_file_size_mb * 1024 * 1024),
        run_history=False,
        enable_monitoring=False,
        footer_links=["api", "settings"],
        css_paths=[CSS_PATH] if CSS_PATH.exists() else None,
        show_error=True,
    )
    return blocks
