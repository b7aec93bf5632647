"""The simulated Satellite: its state and its Foreman API v2 subset over HTTP."""

from __future__ import annotations

import re
import socketserver
import threading
import uuid as uuidlib
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import falcon

from instanceapi.testing.satellite import paging
from instanceapi.testing.satellite.auth import ROUTE_PERMISSIONS, SimUser, authenticate
from instanceapi.testing.satellite.model import SearchError, SimHost

_ID = re.compile(r"/\d+(?=/|$)")


class SimulatedSatellite:
    """The simulated Satellite; use as a context manager to serve it."""

    def __init__(
        self,
        *,
        user: str = "admin",
        password: str = "changeme",  # noqa: S107 - a fixture's well-known password
        port: int = 0,
    ) -> None:
        """Create an empty Satellite whose administrator is `user`."""
        self.user = user
        self.password = password
        self.users: dict[str, SimUser] = {user: SimUser(user, password)}
        self.global_parameters: dict[str, str] = {}
        self.requests: Counter[str] = Counter()
        self.searches: dict[str, list[str]] = {}  # the `search` of each request, by route
        self.deleted: list[str] = []
        self._hosts: dict[int, SimHost] = {}
        self._next_id = 1
        self._faults: list[dict[str, Any]] = []
        self._delete_faults: dict[str, int | None] = {}
        self._hooks: list[tuple[str, int, Callable[[], object]]] = []
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

    def add_user(
        self,
        login: str,
        password: str,
        permissions: set[str] | None,
        tokens: set[str] | None = None,
    ) -> SimUser:
        """Add an API user holding `permissions` (None: an administrator)."""
        perms = None if permissions is None else frozenset(permissions)
        user = SimUser(login, password, perms, set(tokens or ()))
        self.users[login] = user
        return user

    def add_host(
        self, name: str, *, uuid: str | None = None, product: str | None = None, **kw: Any
    ) -> SimHost:
        """Add a host; `uuid` and `product` become the virt::uuid and DMI product facts.

        A host with a `uuid` is registered (a Candlepin consumer) unless told otherwise.
        """
        facts = dict(kw.pop("facts", {}))
        if uuid is not None:
            facts["virt::uuid"] = uuid
            kw.setdefault("registration", str(uuidlib.uuid4()))
            kw.setdefault("registered_at", datetime(2024, 1, 1, tzinfo=UTC))
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

    def reregister(self, name: str, uuid: str, product: str = "OpenStack Compute") -> SimHost:
        """Register a new machine under `name`: it takes over the same id and name.

        Katello's `host_profile_assume`: the RHSM facts are replaced (a new virt::uuid)
        and so is the Candlepin consumer.
        """
        with self._lock:
            host = next(h for h in self._hosts.values() if h.name == name)
            host.facts = {"virt::uuid": uuid, "dmi::system::product_name": product}
            host.registration = str(uuidlib.uuid4())
            host.registered_at = datetime.now(UTC)
        return host

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

    def before(self, route: str, action: Callable[[], object], *, after: int = 0) -> None:
        """Run `action` once, right before serving the `after + 1`-th request of `route`
        from now on.

        `route` is counted like `requests`, e.g. "GET /api/v2/hosts/:id": tests use it
        to change Satellite between two requests of a client, as a race would.
        """
        with self._lock:
            self._hooks.append((route, self.requests[route] + after + 1, action))

    def fail_delete(self, name: str, status: int | None = None) -> None:
        """Make every DELETE of `name` fail to destroy the record.

        With no `status`, Katello's way: the consumer is unregistered, the destroy
        fails, and the answer is still 200. With a `status`, answer that instead.
        """
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
        app.add_route("/api/v2/hosts/{ident}/parameters", api, suffix="params")
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
        """Katello's destroy: unregister, then destroy the record, ignoring the result."""
        with self._lock:
            if host.name in self._delete_faults:
                status = self._delete_faults[host.name]
                if status is not None:
                    return status
                host.registration = None  # unregistered; the record survives
                return 200
            if self._hosts.pop(host.id, None) is not None:
                self.deleted.append(host.name)
            return 200

    def _snapshot(self) -> list[SimHost]:
        with self._lock:
            return sorted(self._hosts.values(), key=lambda h: h.id)


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def _error(resp: falcon.Response, status: int, message: str, details: str = "") -> None:
    resp.status = falcon.code_to_http_status(status)
    resp.media = {"error": {"message": message, **({"details": details} if details else {})}}
    resp.complete = True


class _Gate:
    """Count requests, authenticate, authorise, inject GET failures."""

    def __init__(self, sim: SimulatedSatellite) -> None:
        self.sim = sim

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        route = f"{req.method} {_ID.sub('/:id', req.path)}"
        with self.sim._lock:
            self.sim.requests[route] += 1
            if req.get_param("search") is not None:
                self.sim.searches.setdefault(route, []).append(req.get_param("search") or "")
            due = [h for h in self.sim._hooks if h[:2] == (route, self.sim.requests[route])]
            self.sim._hooks = [h for h in self.sim._hooks if h not in due]
        for _route, _number, action in due:
            action()
        user = authenticate(req.get_header("Authorization"), self.sim.users)
        if user is None:
            login = self.sim.user
            _error(resp, 401, f"Unable to authenticate user {login}")
            return
        req.context.user = user
        needed = ROUTE_PERMISSIONS.get(route)
        if needed and not user.can(needed):
            _error(resp, 403, "Access denied", f"Missing one of the required permissions: {needed}")
            return
        status = self.sim._injected(req.path, req.get_param_as_int("page") or 1)
        if status is not None and req.method == "GET":
            _error(resp, status, "injected failure")


class _Api:
    """The routes: hosts index, one host (show, delete, parameters), fact values."""

    def __init__(self, sim: SimulatedSatellite) -> None:
        self.sim = sim

    def on_get_hosts(self, req: falcon.Request, resp: falcon.Response) -> None:
        hosts = self.sim._snapshot()
        order, thin = req.get_param("order") or "", req.get_param_as_bool("thin") or False
        try:
            chosen = paging.select(hosts, req.get_param("search") or "", SimHost.field_value)
            chosen = paging.order_hosts(chosen, order, thin)
        except SearchError as ex:
            _error(resp, 400, str(ex))
            return
        page, per_page = paging.page_window(
            req.get_param("page"), req.get_param("per_page"), all_rows=len(chosen)
        )
        rows = chosen[(page - 1) * per_page : page * per_page]
        body = paging.envelope(
            total=len(hosts), subtotal=len(chosen), page=page, per_page=per_page,
            search=req.get_param("search"), order="name asc" if thin else order,
        )  # fmt: skip
        body["results"] = [{"id": h.id, "name": h.name} if thin else h.index_json() for h in rows]
        resp.media = body

    def on_get_facts(self, req: falcon.Request, resp: falcon.Response) -> None:
        hosts = self.sim._snapshot() if req.context.user.can("view_hosts") else []
        rows = [(h, f, v) for h in hosts for f, v in sorted(h.facts.items())]
        search, host_id = paging.host_id_search(req.get_param("search") or "")
        order = req.get_param("order") or ""
        try:
            chosen = paging.select(rows, search, paging.fact_field)
            chosen = [r for r in chosen if host_id in (None, r[0].id)]
            chosen = paging.order_facts(chosen, order)
        except SearchError as ex:
            _error(resp, 400, str(ex))
            return
        # NOTE: fact_values turns per_page=all into LIMIT 0: an empty page.
        page, per_page = paging.page_window(
            req.get_param("page"), req.get_param("per_page"), all_rows=0
        )
        grouped = paging.group_by_host(chosen[(page - 1) * per_page : page * per_page])
        body = paging.envelope(
            total=len(rows), subtotal=len(grouped), page=page, per_page=per_page,
            search=req.get_param("search"), order=order,
        )  # fmt: skip
        body["results"] = grouped
        resp.media = body

    def on_get(self, req: falcon.Request, resp: falcon.Response, ident: str) -> None:
        host = self.sim._find(ident)
        if host is None:
            _error(resp, 404, f"Resource host not found by id '{ident}'")
            return
        user: SimUser = req.context.user
        reveal = bool(req.get_param_as_bool("show_hidden_parameters")) and user.can("edit_params")
        resp.media = host.show_json(
            view_params=user.can("view_params"), reveal=reveal, common=self.sim.global_parameters
        )

    def on_get_params(self, req: falcon.Request, resp: falcon.Response, ident: str) -> None:
        host = self.sim._find(ident)
        if host is None:
            _error(resp, 404, f"Resource host not found by id '{ident}'")
            return
        shown = host.show_json(view_params=True, reveal=False, common={})["parameters"]
        body = paging.envelope(
            total=len(shown), subtotal=len(shown), page=1, per_page=len(shown) or 20,
            search=None, order="",
        )  # fmt: skip
        body["results"] = shown
        resp.media = body

    def on_delete(self, req: falcon.Request, resp: falcon.Response, ident: str) -> None:
        host = self.sim._find(ident)
        status = 404 if host is None else self.sim._delete(host)
        if host is None or status != 200:
            _error(resp, status, f"cannot delete host '{ident}' (HTTP {status})")
        else:
            resp.media = host.index_json()
