"""A simulated Satellite: the Foreman API v2 subset `instanceapi reap` uses, over real HTTP.

Served on 127.0.0.1 by a threaded stdlib WSGI server:

- `GET /api/v2/hosts` and `GET /api/v2/fact_values`, paged like Foreman
  (`page`, `per_page`, `total`, `subtotal`, `results`; fact values keyed by host name);
- `GET /api/v2/hosts/:id` with `compute_resource_id`, `parameters`, `all_parameters`
  and Katello's `subscription_facet_attributes.last_checkin`;
- `DELETE /api/v2/hosts/:id` (an id or a name, as Foreman accepts both);
- basic auth, request counters, and injected failures (a page, a DELETE).

Search subset: clauses joined by `and`, each `field op value` with op `=`, `!=`,
`~` or `!~` and the value bare or double-quoted; parentheses are ignored. Host
fields: name, organization, location, hostgroup, hostgroup_title, params.<name>,
facts.<name>. Fact-value fields: fact, name, host. Anything else answers 400.

Start one for the demo cloud (prints one JSON line with its URL and credentials):

    python -m instanceapi.testing.satellite --hosts-from-json cloud.json
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import re
import signal
import socketserver
import threading
import uuid as uuidlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import falcon

_TOKENS = re.compile(r'"[^"]*"|!=|!~|=|~|[()]|[^\s()"=!~]+')


class SearchError(ValueError):
    """The search uses syntax or a field this simulator does not know."""


@dataclass
class SimHost:
    """One host record."""

    id: int
    name: str
    facts: dict[str, str] = field(default_factory=dict)
    organization: str = "Default Organization"
    location: str = "Default Location"
    hostgroup: str | None = None  # the full title, e.g. "cloud/web"
    compute_resource_id: int | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    inherited_parameters: dict[str, str] = field(default_factory=dict)
    last_checkin: datetime | None = None

    def field_value(self, key: str) -> str | None:
        """Return the value of the search field `key` for this host."""
        simple = {
            "name": self.name,
            "organization": self.organization,
            "location": self.location,
            "hostgroup_title": self.hostgroup,
            "hostgroup": self.hostgroup.rsplit("/", 1)[-1] if self.hostgroup else None,
        }
        if key in simple:
            return simple[key]
        if key.startswith("params."):
            return {**self.inherited_parameters, **self.parameters}.get(key[7:])
        if key.startswith("facts."):
            return self.facts.get(key[6:])
        raise SearchError(f"Field '{key}' not recognized for searching!")

    def index_json(self) -> dict[str, Any]:
        """Return the host as the hosts index shows it."""
        group = self.hostgroup
        return {
            "id": self.id,
            "name": self.name,
            "certname": self.name,
            "organization_name": self.organization,
            "location_name": self.location,
            "hostgroup_title": group,
            "hostgroup_name": group.rsplit("/", 1)[-1] if group else None,
            "compute_resource_id": self.compute_resource_id,
            "compute_resource_name": f"cr-{self.compute_resource_id}"
            if self.compute_resource_id
            else None,
        }

    def show_json(self) -> dict[str, Any]:
        """Return the host as `GET /api/v2/hosts/:id` shows it."""
        own = [{"name": k, "value": v} for k, v in self.parameters.items()]
        merged = {**self.inherited_parameters, **self.parameters}
        body = {
            **self.index_json(),
            "parameters": own,
            "all_parameters": [{"name": k, "value": v} for k, v in merged.items()],
        }
        if self.last_checkin is not None:
            when = self.last_checkin.strftime("%Y-%m-%d %H:%M:%S UTC")
            body["subscription_facet_attributes"] = {"last_checkin": when}
        return body


def parse_search(text: str) -> list[tuple[str, str, str]]:
    """Split a search into (field, op, value) clauses joined by `and`."""
    tokens = [t for t in _TOKENS.findall(text or "") if t not in ("(", ")")]
    clauses: list[list[str]] = [[]]
    for token in tokens:
        if token.lower() == "and":
            clauses.append([])
        elif token.lower() in ("or", "not"):
            raise SearchError(f"this simulator does not support '{token}'")
        else:
            clauses[-1].append(token)
    result = []
    for clause in clauses:
        if not clause:
            continue
        if len(clause) != 3 or clause[1] not in ("=", "!=", "~", "!~"):
            raise SearchError(f"cannot parse search clause {' '.join(clause)!r}")
        result.append((clause[0], clause[1], clause[2].strip('"')))
    return result


def matches(value: str | None, op: str, wanted: str) -> bool:
    """Apply one search operator the way Foreman does for strings."""
    if op == "=":
        return value == wanted
    if op == "!=":
        return value != wanted
    found = value is not None and wanted.lower() in value.lower()
    return found if op == "~" else not found


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


def load_hosts(sim: SimulatedSatellite, data: Any) -> None:
    """Add hosts from `data`: the demo cloud's JSON line, or {"hosts": [...]} / a list."""
    if isinstance(data, dict) and ("existing" in data or "deleted" in data):
        uuids = list(data.get("existing", [])) + list(data.get("deleted", []))
        for number, value in enumerate(sorted(uuids), 1):
            sim.add_guest(f"vm-{number:03d}.demo.example.com", value)
        sim.add_host("metal-01.demo.example.com", product="PowerEdge R650")
        vmware_uuid = str(uuidlib.uuid4())
        sim.add_host(
            "vmware-01.demo.example.com", uuid=vmware_uuid, product="VMware Virtual Platform"
        )
        sim.add_host("satellite.demo.example.com")
        return
    for item in data["hosts"] if isinstance(data, dict) else data:
        item = dict(item)
        if isinstance(item.get("last_checkin"), str):
            item["last_checkin"] = datetime.fromisoformat(item["last_checkin"])
        sim.add_host(item.pop("name"), **item)


def main(argv: list[str] | None = None) -> int:
    """Serve a simulated Satellite until interrupted; print its URL and credentials first."""
    parser = argparse.ArgumentParser(prog="python -m instanceapi.testing.satellite")
    parser.add_argument("--hosts-from-json", metavar="FILE", required=True, help=_FILE_HELP)
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default="changeme")
    parser.add_argument("--max-per-page", type=int, default=1000)
    args = parser.parse_args(argv)
    with open(args.hosts_from_json, encoding="utf-8") as fh:
        lines = fh.read().strip().splitlines() or ["[]"]
    sim = SimulatedSatellite(
        user=args.user, password=args.password, max_per_page=args.max_per_page, port=args.port
    )
    # The demo cloud prints its JSON on the last line; a hosts file is one JSON document.
    load_hosts(sim, json.loads(lines[-1] if lines[-1].startswith('{"') else "\n".join(lines)))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with sim, contextlib.suppress(KeyboardInterrupt):
        info = {"url": sim.url, "user": sim.user, "password": sim.password}
        print(json.dumps({**info, "hosts": len(sim.names())}), flush=True)
        stop.wait()
    return 0


_FILE_HELP = (
    'the demo cloud\'s JSON line ({"existing": [...], "deleted": [...]}), or {"hosts": [...]}'
)

if __name__ == "__main__":
    raise SystemExit(main())
