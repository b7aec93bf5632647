"""The simulated Satellite: its state and its Foreman API v2 subset over HTTP."""

from __future__ import annotations

import base64
import socketserver
import threading
from collections import Counter
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import falcon

from instanceapi.testing.satellite.model import SearchError, SimHost, matches, parse_search


class SimulatedSatellite:
    """The simulated Satellite; use as a context manager to serve it."""

    def __init__(
        self,
        *,
        user: str = "admin",
        password: str = "changeme",  # noqa: S107 - a fixture's well-known password
        max_per_page: int = 1000,
        port: int = 0,
    ) -> None:
        """Configure credentials and the largest page served."""
        self.user = user
        self.password = password
        self.max_per_page = max_per_page
        self.requests: Counter[str] = Counter()
        self.deleted: list[str] = []
        self._hosts: dict[int, SimHost] = {}
        self._next_id = 1
        self._faults: list[dict[str, Any]] = []
        self._delete_faults: dict[str, int] = {}
        self._lock = threading.Lock()
        self._port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Return the base URL, e.g. http://127.0.0.1:40123."""
        if self._server is None:
            raise RuntimeError("the simulated Satellite is not running")
        return f"http://127.0.0.1:{self._server.server_port}"

    def add_host(
        self, name: str, *, uuid: str | None = None, product: str | None = None, **kw: Any
    ) -> SimHost:
        """Add a host; `uuid` and `product` become the virt::uuid and DMI product facts."""
        facts = dict(kw.pop("facts", {}))
        if uuid is not None:
            facts["virt::uuid"] = uuid
        if product is not None:
            facts["dmi::system::product_name"] = product
        with self._lock:
            host = SimHost(id=self._next_id, name=name, facts=facts, **kw)
            self._hosts[host.id] = host
            self._next_id += 1
        return host

    def add_guest(
        self, name: str, uuid: str, product: str = "OpenStack Compute", **kw: Any
    ) -> SimHost:
        """Add an OpenStack guest as subscription-manager reports it."""
        return self.add_host(name, uuid=uuid, product=product, **kw)

    def names(self) -> set[str]:
        """Return the names of the hosts still present."""
        with self._lock:
            return {h.name for h in self._hosts.values()}

    def host(self, name: str) -> SimHost | None:
        """Return the host called `name`, if present."""
        with self._lock:
            return next((h for h in self._hosts.values() if h.name == name), None)

    def fail_requests(
        self, path: str, *, status: int = 500, times: int = 1, page: int | None = None
    ) -> None:
        """Answer the next `times` GETs of `path` (optionally only page `page`) with `status`."""
        with self._lock:
            self._faults.append({"path": path, "status": status, "left": times, "page": page})

    def fail_delete(self, name: str, status: int = 500) -> None:
        """Refuse every DELETE of the host `name` with `status`."""
        with self._lock:
            self._delete_faults[name] = status

    def __enter__(self) -> SimulatedSatellite:
        """Start serving on a free loopback port."""
        self._server = make_server(
            "127.0.0.1", self._port, self.app(), server_class=_Server, handler_class=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def app(self) -> falcon.App[falcon.Request, falcon.Response]:
        """Return the WSGI app (also usable with falcon.testing)."""
        api = _Api(self)
        app = falcon.App(middleware=[_Gate(self)])
        app.add_route("/api/v2/hosts", api, suffix="hosts")
        app.add_route("/api/v2/hosts/{ident}", api)
        app.add_route("/api/v2/fact_values", api, suffix="facts")
        return app

    # --- used by the resources -------------------------------------------------

    def _injected(self, path: str, page: int) -> int | None:
        with self._lock:
            for fault in self._faults:
                if fault["path"] == path and fault["left"] > 0 and fault["page"] in (None, page):
                    fault["left"] -= 1
                    return int(fault["status"])
        return None

    def _find(self, ident: str) -> SimHost | None:
        with self._lock:
            if ident.isdigit():
                return self._hosts.get(int(ident))
            return next((h for h in self._hosts.values() if h.name == ident), None)

    def _delete(self, host: SimHost) -> int:
        with self._lock:
            status = self._delete_faults.get(host.name)
            if status is None and self._hosts.pop(host.id, None) is not None:
                self.deleted.append(host.name)
            return status or 200

    def _snapshot(self) -> list[SimHost]:
        with self._lock:
            return sorted(self._hosts.values(), key=lambda h: h.id)


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def _error(resp: falcon.Response, status: int, message: str) -> None:
    resp.status = falcon.code_to_http_status(status)
    resp.media = {"error": {"message": message}}
    resp.complete = True


class _Gate:
    """Count requests, check basic auth, inject GET failures."""

    def __init__(self, sim: SimulatedSatellite) -> None:
        self.sim = sim

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        route = "/api/v2/hosts/:id" if req.path.startswith("/api/v2/hosts/") else req.path
        with self.sim._lock:
            self.sim.requests[f"{req.method} {route}"] += 1
        expected = base64.b64encode(f"{self.sim.user}:{self.sim.password}".encode()).decode()
        if req.get_header("Authorization") != f"Basic {expected}":
            _error(resp, 401, f"Unable to authenticate user {self.sim.user}")
            return
        status = self.sim._injected(req.path, req.get_param_as_int("page") or 1)
        if status is not None and req.method == "GET":
            _error(resp, status, "injected failure")


class _Api:
    """The routes: hosts index, one host (show, delete), fact values."""

    def __init__(self, sim: SimulatedSatellite) -> None:
        self.sim = sim

    def on_get_hosts(self, req: falcon.Request, resp: falcon.Response) -> None:
        hosts = self.sim._snapshot()
        body = self._paged(req, resp, hosts, lambda h, key: h.field_value(key))
        if body is not None:
            body["results"] = [h.index_json() for h in body["results"]]
            resp.media = body

    def on_get_facts(self, req: falcon.Request, resp: falcon.Response) -> None:
        rows = [(h, f, v) for h in self.sim._snapshot() for f, v in sorted(h.facts.items())]
        body = self._paged(req, resp, rows, _fact_field)
        if body is not None:
            grouped: dict[str, dict[str, str]] = {}
            for host, fact, value in body["results"]:
                grouped.setdefault(host.name, {})[fact] = value
            body["results"] = grouped
            resp.media = body

    def on_get(self, req: falcon.Request, resp: falcon.Response, ident: str) -> None:
        host = self.sim._find(ident)
        if host is None:
            _error(resp, 404, f"Resource host not found by id '{ident}'")
        else:
            resp.media = host.show_json()

    def on_delete(self, req: falcon.Request, resp: falcon.Response, ident: str) -> None:
        host = self.sim._find(ident)
        status = 404 if host is None else self.sim._delete(host)
        if host is None or status != 200:
            _error(resp, status, f"cannot delete host '{ident}' (HTTP {status})")
        else:
            resp.media = host.index_json()

    def _paged(
        self, req: falcon.Request, resp: falcon.Response, rows: list[Any], get: Any
    ) -> dict[str, Any] | None:
        try:
            clauses = parse_search(req.get_param("search") or "")
            chosen = [r for r in rows if all(matches(get(r, f), op, v) for f, op, v in clauses)]
        except SearchError as ex:
            _error(resp, 400, str(ex))
            return None
        page = max(1, req.get_param_as_int("page") or 1)
        per_page = min(max(1, req.get_param_as_int("per_page") or 20), self.sim.max_per_page)
        return {
            "total": len(rows),
            "subtotal": len(chosen),
            "page": page,
            "per_page": per_page,
            "search": req.get_param("search"),
            "results": chosen[(page - 1) * per_page : page * per_page],
        }


def _fact_field(row: tuple[SimHost, str, str], key: str) -> str | None:
    host, fact, value = row
    found = {"fact": fact, "name": fact, "host": host.name, "value": value}
    return found[key] if key in found else host.field_value(key)
