"""The simulated Satellite's HTTP side: authentication and permissions, then the routes."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import falcon

from instanceapi.testing.satellite import paging
from instanceapi.testing.satellite.auth import ROUTE_PERMISSIONS, SimUser, authenticate
from instanceapi.testing.satellite.model import SearchError, SimHost

if TYPE_CHECKING:
    from instanceapi.testing.satellite.server import SimulatedSatellite

_ID = re.compile(r"/\d+(?=/|$)")


def _error(resp: falcon.Response, status: int, message: str, details: str = "") -> None:
    resp.status = falcon.code_to_http_status(status)
    resp.media = {"error": {"message": message, **({"details": details} if details else {})}}
    resp.complete = True


class Gate:
    """Count requests, authenticate, authorise, inject GET failures."""

    def __init__(self, sim: SimulatedSatellite) -> None:
        """Serve `sim`."""
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


class Api:
    """The routes: hosts index, one host (show, delete, parameters), fact values."""

    def __init__(self, sim: SimulatedSatellite) -> None:
        """Serve `sim`."""
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
