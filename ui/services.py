"""What the page root hands every tab builder."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backends.router import Router
from ui.settings import UISettings


@dataclass
class UIServices:
    """The services a tab builder may use; optional ones are None when not configured.

    Tab modules expose `build_<tab>_tab(services: UIServices) -> None` (for
    example `build_voice_tab`), which `ui.root` calls inside the tab's
    `gr.Tab` context. `config` is the whole `AppConfig`; `max_prompt_chars`
    comes from its `[server]` section.
    """

    router: Router
    settings: UISettings = field(default_factory=UISettings)
    config: Any = None
    max_prompt_chars: int = 200_000
    transcriber: Any = None
    image_pipeline: Any = None
    presets: Any = None
    jobs: Any = None
    # The Chat tab's components (a ui.chat_tab.ChatTab), set by ui.root before the
    # other tabs are built, so they can hand input over to the chat.
    chat_tab: Any = None
