"""``GET /openapi.json``: the OpenAPI 3.1 description shipped inside the package."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import falcon

DOCUMENT = "openapi.json"


def load_document() -> dict[str, Any]:
    """Return the packaged OpenAPI document, parsed."""
    data: dict[str, Any] = json.loads(read_document())
    return data


def read_document() -> bytes:
    """Return the packaged OpenAPI document as bytes (read with importlib.resources)."""
    return resources.files("instanceapi.http").joinpath(DOCUMENT).read_bytes()


class OpenAPIResource:
    """Serve the document; it is read once, when the app is built."""

    def __init__(self) -> None:
        self._body = read_document()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer 200 with the document."""
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self._body
