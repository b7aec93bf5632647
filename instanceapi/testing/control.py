"""``/_sim/`` control API, so a cloud running in another process can be driven and read."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from instanceapi.testing.httpd import App, Request, Response

if TYPE_CHECKING:
    from instanceapi.testing.cloud import SimulatedCloud

Handler = Callable[["SimulatedCloud", Request, dict[str, Any], str], Response]
FAULT_KEYS = (
    "region",
    "down",
    "status",
    "delay",
    "garbage",
    "fail_page",
    "hide_cell",
    "replay_pages",
    "bad_item",
)
OK = {"ok": True}


class Body(dict[str, Any]):
    """A JSON request body; a missing field is a client error."""

    def __missing__(self, key: str) -> Any:
        raise ValueError(f"missing field {key!r}")


def _region(request: Request, body: dict[str, Any]) -> str | None:
    values = request.params.get("region")
    return body.get("region") or (values[-1] if values else None)


def _counts(cloud: SimulatedCloud, request: Request, body: dict[str, Any], _: str) -> Response:
    return Response(200, dict(cloud.counts))


def _reset(cloud: SimulatedCloud, request: Request, body: dict[str, Any], _: str) -> Response:
    cloud.reset_counts()
    return Response(200, OK)


def _fault(cloud: SimulatedCloud, request: Request, body: dict[str, Any], _: str) -> Response:
    unknown = set(body) - {*FAULT_KEYS, "retry_after", "service"}
    if unknown:
        raise ValueError(f"unknown fault fields {sorted(unknown)}")
    kwargs = {k: body[k] for k in (*FAULT_KEYS, "retry_after") if k in body}
    cloud.fault(str(body.get("service", "")), **kwargs)
    return Response(200, OK)


def _clear(cloud: SimulatedCloud, request: Request, body: dict[str, Any], _: str) -> Response:
    cloud.clear_faults()
    return Response(200, OK)


def _tokens(cloud: SimulatedCloud, request: Request, body: dict[str, Any], what: str) -> Response:
    if what == "expire":
        cloud.expire_tokens()
    else:
        cloud.revoke_tokens()
    return Response(200, OK)


def _add_server(cloud: SimulatedCloud, request: Request, body: dict[str, Any], _: str) -> Response:
    keys = ("project", "status", "region", "server_id", "name", "cell")
    server = cloud.add_server(**{k: body[k] for k in keys if k in body})
    return Response(201, server.to_dict())


def _list_servers(
    cloud: SimulatedCloud, request: Request, body: dict[str, Any], _: str
) -> Response:
    return Response(200, {"servers": [s.to_dict() for s in cloud.servers(_region(request, body))]})


def _delete_server(
    cloud: SimulatedCloud, request: Request, body: dict[str, Any], server_id: str
) -> Response:
    soft = request.params.get("soft", ["0"])[-1].lower() in ("1", "true", "yes")
    if soft:
        cloud.soft_delete_server(server_id, _region(request, body))
    else:
        cloud.delete_server(server_id, _region(request, body))
    return Response(204)


def _set_status(
    cloud: SimulatedCloud, request: Request, body: dict[str, Any], server_id: str
) -> Response:
    server = cloud.set_status(server_id, str(body["status"]), _region(request, body))
    return Response(200, server.to_dict())


def _populate(cloud: SimulatedCloud, request: Request, body: dict[str, Any], _: str) -> Response:
    kwargs = {k: body[k] for k in ("region", "projects", "seed") if k in body}
    return Response(200, {"ids": cloud.populate(int(body["n"]), **kwargs)})


def _purge(cloud: SimulatedCloud, request: Request, body: dict[str, Any], _: str) -> Response:
    return Response(200, {"purged": cloud.purge_deleted(_region(request, body))})


def _cells(cloud: SimulatedCloud, request: Request, body: dict[str, Any], _: str) -> Response:
    cloud.set_cell_down(str(body["cell"]), bool(body.get("down", True)), _region(request, body))
    return Response(200, OK)


def _microversion(
    cloud: SimulatedCloud, request: Request, body: dict[str, Any], _: str
) -> Response:
    cloud.set_max_microversion(str(body["version"]), _region(request, body))
    return Response(200, OK)


def _state(cloud: SimulatedCloud, request: Request, body: dict[str, Any], _: str) -> Response:
    regions = {}
    for region in cloud.regions:
        servers = cloud.servers(region)
        regions[region] = {
            "nova_url": cloud.nova_url(region),
            "servers": len(servers),
            "by_status": dict(Counter(s.status for s in servers)),
            "by_project": dict(Counter(s.project_id for s in servers)),
        }
    return Response(
        200,
        {
            "auth_url": cloud.auth_url,
            "projects": cloud.projects,
            "regions": regions,
            "faults": cloud.faults(),
            "counts": dict(cloud.counts),
        },
    )


def _requests(cloud: SimulatedCloud, request: Request, body: dict[str, Any], _: str) -> Response:
    return Response(200, {"requests": [list(r) for r in cloud.requests]})


ROUTES: list[tuple[str, re.Pattern[str], Handler, str]] = [
    ("GET", re.compile(r"/_sim/counts"), _counts, ""),
    ("GET", re.compile(r"/_sim/state"), _state, ""),
    ("GET", re.compile(r"/_sim/requests"), _requests, ""),
    ("POST", re.compile(r"/_sim/reset"), _reset, ""),
    ("POST", re.compile(r"/_sim/fault"), _fault, ""),
    ("POST", re.compile(r"/_sim/clear"), _clear, ""),
    ("POST", re.compile(r"/_sim/expire_tokens"), _tokens, "expire"),
    ("POST", re.compile(r"/_sim/revoke_tokens"), _tokens, "revoke"),
    ("POST", re.compile(r"/_sim/servers"), _add_server, ""),
    ("GET", re.compile(r"/_sim/servers"), _list_servers, ""),
    ("DELETE", re.compile(r"/_sim/servers/(?P<id>[^/]+)"), _delete_server, ""),
    ("POST", re.compile(r"/_sim/servers/(?P<id>[^/]+)/status"), _set_status, ""),
    ("POST", re.compile(r"/_sim/populate"), _populate, ""),
    ("POST", re.compile(r"/_sim/purge"), _purge, ""),
    ("POST", re.compile(r"/_sim/cells"), _cells, ""),
    ("POST", re.compile(r"/_sim/microversion"), _microversion, ""),
]


def make_control_app(cloud: SimulatedCloud) -> App:
    """The control application bound to ``cloud``."""

    def app(request: Request) -> Response:
        path = request.path.rstrip("/")
        for method, pattern, handler, arg in ROUTES:
            match = pattern.fullmatch(path)
            if match is None or method != request.method:
                continue
            try:
                raw = request.json() if request.body else {}
                if not isinstance(raw, dict):
                    raise TypeError("the body must be a JSON object")
                return handler(cloud, request, Body(raw), match.groupdict().get("id") or arg)
            except KeyError as exc:
                return Response(404, {"error": f"not found: {exc}"})
            except (ValueError, TypeError) as exc:
                return Response(400, {"error": str(exc)})
        return Response(404, {"error": f"no control route {request.method} {path}"})

    return app
