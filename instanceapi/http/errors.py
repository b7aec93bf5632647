"""Error answers: the serializer for every HTTP error, and the domain errors' handlers."""

from __future__ import annotations

from typing import Any

import falcon

from instanceapi.check.checker import Overloaded
from instanceapi.http.render import EXISTS_HEADER


def serialize_error(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError) -> None:
    """Render an error as Falcon's standard JSON, or as one line for text/plain clients.

    Falcon's default gives a text/plain client an empty body; a person reading
    ``curl -H 'Accept: text/plain'`` output deserves the reason too.
    """
    resp.append_header("Vary", "Accept")
    if req.client_prefers((falcon.MEDIA_JSON, falcon.MEDIA_TEXT)) == falcon.MEDIA_TEXT:
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = (
            f"{error.title}: {error.description}\n" if error.description else (f"{error.title}\n")
        )
        return
    resp.content_type = falcon.MEDIA_JSON
    resp.data = error.to_json()


def overloaded(
    req: falcon.Request, resp: falcon.Response, ex: Overloaded, params: dict[str, Any]
) -> None:
    """Error handler: the upstream budget is spent; 503, never a 404."""
    raise falcon.HTTPServiceUnavailable(
        title="Overloaded",
        description=str(ex),
        retry_after=ex.retry_after,
        headers={EXISTS_HEADER: "unknown"},
    )
