"""The browser UI's login: its user name and password, and the warning when a reachable UI has none.

Gradio's own login (the `auth` of `mount_gradio_app`) checks the password.
The password comes only from the environment variable named by
`server.ui_password_env`; it is never logged and never sent to the browser.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from backends.errors import ConfigError
from config import ServerSettings

logger = logging.getLogger(__name__)

# Gradio 6.31 writes the whole API description (endpoints, parameters, the model
# names in their choices) into the page at "/" even when it serves the login
# form there, although /gradio_api/info itself requires the login.
LOGIN_PAGE_MARK = b'"auth_required":true'
API_INFO_START = b"<script>window.gradio_api_info = "
API_INFO_END = b";</script>"
# An empty description, not null: with null the login form fetches /info and logs an error.
API_INFO_EMPTY = b'<script>window.gradio_api_info = {"named_endpoints":{},"unnamed_endpoints":{}};</script>'


@dataclass(frozen=True)
class UILogin:
    """The user name and password of the browser UI's login; the password stays out of repr."""

    user: str
    password: str = field(repr=False)
    password_env: str

    @classmethod
    def from_env(cls, env: Mapping[str, str], server: ServerSettings) -> UILogin | None:
        """Read the password from `server.ui_password_env`; None when that variable is unset.

        Raises ConfigError when the variable is set but blank, as a missing
        secret often is in a container: the UI would otherwise stay open
        although a login was intended.
        """
        password = env.get(server.ui_password_env)
        if password is None:
            return None
        if not password.strip():
            raise ConfigError(
                f"{server.ui_password_env} is set but empty, so the browser UI would have no login",
                fix=f"Set {server.ui_password_env} to the login password, or unset it to leave the UI without a login.",
            )
        return cls(user=server.ui_user, password=password, password_env=server.ui_password_env)


def is_loopback(host: str) -> bool:
    """Return whether `host` is "localhost" or a loopback IP address; any other host name counts as reachable from outside."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def warn_if_ui_open(host: str, port: int, server: ServerSettings, env: Mapping[str, str]) -> bool:
    """Log a warning when the UI has no login and `host` is not a loopback address; return whether it warned."""
    if is_loopback(host) or UILogin.from_env(env, server):
        return False
    logger.warning(
        "The browser UI on http://%s:%d has no login: anyone who can reach this port can chat through "
        "every configured model, paid APIs included. Set %s to require a login as user %r "
        "(server.ui_password_env, server.ui_user), or listen on 127.0.0.1 only.",
        host,
        port,
        server.ui_password_env,
        server.ui_user,
    )
    return True


def hide_api_info_on_login_page(page: bytes) -> bytes:
    """Replace the API description in Gradio's login page with an empty one; leave any other page as it is."""
    if LOGIN_PAGE_MARK not in page:
        return page
    start = page.find(API_INFO_START)
    if start < 0:
        return page
    # Gradio escapes "<" inside the JSON, so the first ";</script>" after it ends the script.
    end = page.find(API_INFO_END, start)
    if end < 0:
        return page
    return page[:start] + API_INFO_EMPTY + page[end + len(API_INFO_END) :]
