"""The simulated Satellite: its state and its Foreman API v2 subset over HTTP."""

from __future__ import annotations

import socketserver
import threading
import uuid as uuidlib
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import falcon

from instanceapi.testing.satellite.auth import SimUser
from instanceapi.testing.satellite.model import SimHost
from instanceapi.testing.satellite.routes import Api, Gate


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
        api = Api(self)
        app = falcon.App(middleware=[Gate(self)])
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
