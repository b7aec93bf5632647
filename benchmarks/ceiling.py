"""The framework ceiling: a bare Falcon ``/check/{raw}`` that validates the UUID and answers 200.

It parses the UUID with the service's own rules (``instanceapi.uuids.parse_uuid``:
400 for anything else) and answers a small JSON body, with no index, no cache,
no OpenStack. The benchmark runs it under the service's Gunicorn settings::

    python -m gunicorn -c python:instanceapi.serve.gunicorn_conf 'benchmarks.ceiling:create_app()'

(the positional app replaces the config's ``wsgi_app``; the config still needs
``INSTANCEAPI_CLOUDS`` and a clouds.yaml, as for the service).
"""

from __future__ import annotations

import falcon

from instanceapi.uuids import InvalidUUID, parse_uuid


class CeilingResource:
    """``GET /check/{raw}``: 200 and ``{"uuid", "exists": true}`` for any valid UUID."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, raw: str) -> None:
        """Validate like the service, then answer 200 without looking anything up."""
        try:
            canonical = parse_uuid(raw)
        except InvalidUUID as ex:
            raise falcon.HTTPBadRequest(title="Invalid UUID", description=str(ex)) from ex
        resp.cache_control = ["no-store"]
        resp.media = {"uuid": canonical, "exists": True}


def create_app() -> falcon.App:
    """Return the ceiling app (Gunicorn calls this in each worker)."""
    app = falcon.App()
    app.req_options.strip_url_path_trailing_slash = True
    app.add_route("/check/{raw}", CeilingResource())
    app.add_route("/healthz", HealthResource())
    return app


class HealthResource:
    """``GET /healthz``: the harness waits for this before measuring."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer 200."""
        resp.media = {"status": "ok"}
