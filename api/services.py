"""The services the API endpoints get from the composition root, stored on `app.state`."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection

from api.auth import ApiKeys, bearer_token
from backends.router import Router
from config import ServerSettings
from multimodal.image_service import ImageService


@dataclass(frozen=True)
class ApiServices:
    router: Router
    server: ServerSettings
    api_keys: ApiKeys
    # Prepares image_url parts and applies the vision rules; None leaves images as sent.
    images: ImageService | None = None

    def authorize(self, connection: HTTPConnection) -> None:
        """Raise ApiKeyError unless the request carries an accepted bearer key."""
        if self.api_keys.enabled:
            self.api_keys.check(bearer_token(connection.headers.get("authorization")))


def api_services(connection: HTTPConnection) -> ApiServices:
    """Return the services of the app that received this request or WebSocket."""
    services: ApiServices = connection.app.state.parley_api
    return services
