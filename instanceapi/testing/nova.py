"""Nova (compute API v2.1) subset for one region: discovery, show and list servers."""

from __future__ import annotations

import dataclasses

from instanceapi.testing import nova_views as views
from instanceapi.testing.compute import Region, parse_version
from instanceapi.testing.httpd import App, Request, Response
from instanceapi.testing.listing import list_servers
from instanceapi.testing.model import FakeServer
from instanceapi.testing.rules import rule_allows
from instanceapi.testing.state import CloudState, guarded, keystone_error, request_id_headers

PREFIX = "/v2.1"
VERSION_HEADERS = "OpenStack-API-Version, X-OpenStack-Nova-API-Version"
#: Counter of the servers returned by listings (not a request count).
LISTED = "nova.servers_listed"
#: Counter of the listing requests that had a changes-since parameter.
CHANGES_SINCE = "nova.list_changes_since"
REVOKED = "The request you have made requires authentication. (Token has been revoked.)"


@dataclasses.dataclass(slots=True)
class Context:
    """The caller, as Nova sees it after keystonemiddleware."""

    project_id: str
    user_id: str
    is_admin: bool
    list_all: bool
    version: tuple[int, int]


def version_doc(nova_url: str, region: Region) -> dict[str, object]:
    """The v2.1 version entry."""
    major, minor = region.max_microversion
    return {
        "id": "v2.1",
        "status": "CURRENT",
        "version": f"{major}.{minor}",
        "min_version": "2.1",
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": f"{nova_url}/"}],
        "media-types": [
            {
                "base": "application/json",
                "type": "application/vnd.openstack.compute+json;version=2.1",
            }
        ],
    }


def classify(request: Request) -> str:
    """Counter name of a Nova request."""
    path = request.path.rstrip("/")
    if path in ("", PREFIX):
        return "discovery"
    if path in (f"{PREFIX}/servers", f"{PREFIX}/servers/detail"):
        return "list"
    if path.startswith(f"{PREFIX}/servers/") and path.count("/") == 3:
        return "show"
    return "other"


def _unauthorized(request: Request, message: str | None = None) -> Response:
    headers = request_id_headers()
    headers["WWW-Authenticate"] = f'Keystone uri="{request.base_url}"'
    return Response(401, keystone_error(401, message), headers)


def _requested_version(request: Request, region: Region) -> tuple[int, int] | Response:
    raw = None
    for item in request.headers.get("openstack-api-version", "").split(","):
        parts = item.split()
        if len(parts) == 2 and parts[0].lower() == "compute":
            raw = parts[1]
    if raw is None:
        raw = request.headers.get("x-openstack-nova-api-version")
    if raw is None:
        return (2, 1)
    if raw.strip().lower() == "latest":
        return region.max_microversion
    try:
        version = parse_version(raw)
    except ValueError:
        message = f"API Version String {raw} is of invalid format. Must be of format "
        message += "MajorNum.MinorNum."
        return Response(400, views.fault_body(400, message), request_id_headers())
    if not (2, 1) <= version <= region.max_microversion:
        top = "{}.{}".format(*region.max_microversion)
        message = f"Version {raw} is not supported by the API. Minimum is 2.1 and maximum is {top}."
        return Response(406, views.fault_body(406, message), request_id_headers())
    return version


class NovaApp:
    """Request handling of one region's Nova."""

    def __init__(self, state: CloudState, region: str) -> None:
        self.state = state
        self.region_name = region

    @property
    def region(self) -> Region:
        """This app's region data."""
        return self.state.regions[self.region_name]

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>/v2.1``."""
        return self.state.nova_urls[self.region_name]

    def __call__(self, request: Request) -> Response:
        response, returned = self._route(request)
        if classify(request) == "list":
            # Servers returned by listings (what a poll or a full listing cost Nova),
            # and which listings were changes-since ones (the rest: full or unfiltered).
            self.state.stats.tally(LISTED, returned, self.region_name)
            if "changes-since" in request.params:
                self.state.stats.tally(CHANGES_SINCE, 1, self.region_name)
        config = self.state.config
        self.state.sleep(config.nova_latency + config.per_server_latency * returned)
        return response

    def _route(self, request: Request) -> tuple[Response, int]:
        path = request.path.rstrip("/")
        if path in ("", PREFIX) and request.method in ("GET", "HEAD"):
            doc = version_doc(self.url, self.region)
            body = {"versions": [doc]} if path == "" else {"version": doc}
            return Response(200, body, request_id_headers()), 0
        ctx = self._authenticate(request)
        if isinstance(ctx, Response):
            return ctx, 0
        response, returned = self._dispatch(request, path, ctx)
        version = "{}.{}".format(*ctx.version)
        response.headers["OpenStack-API-Version"] = f"compute {version}"
        response.headers["X-OpenStack-Nova-API-Version"] = version
        response.headers["Vary"] = VERSION_HEADERS
        response.headers.update(request_id_headers())
        return response, returned

    def _authenticate(self, request: Request) -> Context | Response:
        state = self.state
        with state.lock:
            token = state.identity.lookup_token(request.headers.get("x-auth-token", ""))
            if token is None or token.expires_at <= state.clock.now():
                return _unauthorized(request)
            if token.revoked:
                return _unauthorized(request, REVOKED)
            cred = state.identity.app_creds.get(token.app_cred_id or "")
            if (
                cred
                and cred.access_rules
                and not rule_allows(cred.access_rules, "compute", request.method, request.path)
            ):
                return _unauthorized(request)
            user = state.identity.user_by_id(token.user_id)
            version = _requested_version(request, self.region)
        if isinstance(version, Response):
            return version
        return Context(
            project_id=token.project_id,
            user_id=token.user_id,
            is_admin="admin" in token.roles,
            list_all=user.list_all_projects,
            version=version,
        )

    def _dispatch(self, request: Request, path: str, ctx: Context) -> tuple[Response, int]:
        kind = classify(request)
        if kind in ("list", "show") and request.method != "GET":
            return Response(405, views.fault_body(405, "Method not allowed.")), 0
        if kind == "list":
            fault = self.state.fault("nova", self.region_name)
            detailed = path.endswith("/detail")
            status, body, returned = list_servers(
                self.state, self.region, self.url, request, ctx, detailed=detailed, fault=fault
            )
            return Response(status, body), returned
        if kind == "show":
            return self._show(path.rsplit("/", 1)[1], ctx)
        message = "The resource could not be found."
        return Response(404, views.fault_body(404, message)), 0

    def _show(self, server_id: str, ctx: Context) -> tuple[Response, int]:
        hidden = self.state.fault("nova", self.region_name).hide_cell
        with self.state.lock:
            server = self.region.servers.get(server_id)
            down = server is not None and self.region.is_down(server, hidden)
            server = server.copy() if server is not None else None
        if server is not None and down:
            return self._show_down(server, ctx)
        own = server is not None and (ctx.is_admin or server.project_id == ctx.project_id)
        # A build request answers even a reader of another project with a listing
        # override (observed on Nova 34); once in its cell, Nova scopes the lookup.
        building = server is not None and server.stage == "unscheduled" and ctx.list_all
        if server is None or server.deleted or not (own or building):
            message = f"Instance {server_id} could not be found."
            return Response(404, views.fault_body(404, message)), 0
        body = views.detail(server, self.url, ctx.version, is_admin=ctx.is_admin)
        return Response(200, {"server": body}), 1

    def _show_down(self, server: FakeServer, ctx: Context) -> tuple[Response, int]:
        """A server of an unreachable cell, deleted or not (shared facts, "a cell that is down")."""
        if ctx.version < (2, 69):
            return Response(500, views.fault_body(500)), 0
        if not (ctx.is_admin or ctx.list_all or server.project_id == ctx.project_id):
            message = "Policy doesn't allow os_compute_api:servers:show to be performed."
            return Response(403, views.fault_body(403, message)), 0
        return Response(200, {"server": views.down_detail(server, self.url)}), 1


def make_app(state: CloudState, region: str) -> App:
    """The Nova application of one region (with fault injection and counting)."""
    return guarded(state, "nova", region, NovaApp(state, region), classify, views.fault_body)
