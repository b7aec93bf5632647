"""A fake of the instanceapi service for the reap tests: its HTTP contract, with failure modes.

Shared by tests/test_reap_e2e.py, test_reap_foreman.py and test_reap_script.py.
"""

from __future__ import annotations

import contextlib
import socketserver
import threading
from collections import Counter
from datetime import UTC, datetime
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import falcon

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
UUID = "7e3a0c1e-5d2b-4f6a-8c9d-{:012x}"


class FakeService:
    """The instanceapi HTTP contract; `mode` selects a failure to act out."""

    def __init__(self) -> None:
        self.existing: set[str] = set()
        self.mode = "ok"  # ok | error | bare-404 | all-absent | misordered
        self.bulk = True
        self.ready_budget = 10**9  # /readyz answers 200 this many times, then 503
        self.requests: Counter[str] = Counter()
        self.token: str | None = None
        self.detail = ""  # the detail of every bulk result

    def app(self) -> falcon.App:
        app = falcon.App(middleware=[self])
        app.add_route("/check/{uuid}", self)
        app.add_route("/check", self, suffix="bulk")
        app.add_route("/readyz", self, suffix="ready")
        return app

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.token and req.get_header("Authorization") != f"Bearer {self.token}":
            raise falcon.HTTPUnauthorized(title="Unauthorized", description="bearer token required")

    def on_get_ready(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.ready_budget -= 1
        resp.status = falcon.HTTP_200 if self.ready_budget >= 0 else falcon.HTTP_503
        resp.media = {"ready": self.ready_budget >= 0}

    def on_get(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        self.requests["GET"] += 1
        if self.mode == "bare-404":
            resp.status, resp.content_type, resp.text = falcon.HTTP_404, "text/html", "Not Found"
            return
        if self.mode == "error":
            resp.status = falcon.HTTP_500
            resp.set_header("Instance-Exists", "unknown")
            resp.media = {"uuid": uuid, "exists": None, "detail": "Nova unreachable"}
            return
        exists = self._exists(uuid)
        resp.status = falcon.HTTP_200 if exists else falcon.HTTP_404
        resp.set_header("Instance-Exists", "true" if exists else "false")
        body = {"uuid": uuid.lower(), "exists": exists, "status": "ACTIVE" if exists else None}
        resp.media = body

    def on_post_bulk(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.requests["POST"] += 1
        if not self.bulk or self.mode == "bare-404":
            raise falcon.HTTPMethodNotAllowed(["GET"]) if not self.bulk else falcon.HTTPNotFound()
        if self.mode == "error":
            raise falcon.HTTPInternalServerError()
        uuids = req.get_media()["uuids"]
        results = [
            {
                "uuid": u,
                "input": u,
                "exists": self._exists(u),
                "status": None,
                "detail": self.detail,
            }
            for u in uuids
        ]
        resp.media = {"results": results[::-1] if self.mode == "misordered" else results}

    def _exists(self, uuid: str) -> bool:
        return self.mode != "all-absent" and uuid.lower() in self.existing


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve(app):
    server = make_server("127.0.0.1", 0, app, server_class=_Server, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def populate(sat, service, *, guests=50, gone=10, **kw) -> set[str]:
    """Add `guests` OpenStack hosts (the first `gone` absent) and four others; return gone names."""
    gone_names = set()
    for n in range(guests):
        name = f"vm{n:03d}.cloud.example.com"
        sat.add_guest(name, UUID.format(n).upper(), **kw)
        if n < gone:
            gone_names.add(name)
        else:
            service.existing.add(UUID.format(n))
    sat.add_host("metal.example.com", product="PowerEdge R650")
    sat.add_host("vmware.example.com", uuid=UUID.format(900), product="VMware Virtual Platform")
    sat.add_host("nouuid.cloud.example.com", product="OpenStack Nova")
    sat.add_host("nofacts.example.com")
    return gone_names
