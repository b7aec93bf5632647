"""``GET /servers`` and ``/servers/detail``: Nova's filters, policy and pagination."""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from instanceapi.testing import nova_views as views
from instanceapi.testing.compute import ListQuery, MarkerNotFound, Region
from instanceapi.testing.httpd import Request
from instanceapi.testing.model import STATUSES, FakeServer, Fault
from instanceapi.testing.state import CloudState

if TYPE_CHECKING:
    from instanceapi.testing.nova import Context

TRUE = frozenset({"1", "t", "true", "on", "y", "yes", ""})
FALSE = frozenset({"0", "f", "false", "off", "n", "no"})
Result = tuple[int, dict[str, object], int]


class BadQuery(Exception):
    """A query parameter fails Nova's schema: 400."""


def _last(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[-1] if values else None


def _bool(params: dict[str, list[str]], name: str) -> bool | None:
    raw = _last(params, name)
    if raw is None:
        return None
    if raw.lower() in TRUE:
        return True
    if raw.lower() in FALSE:
        return False
    raise BadQuery(f"Invalid input for query parameters {name}. Value: {raw}.")


def _time(params: dict[str, list[str]], name: str) -> dt.datetime | None:
    raw = _last(params, name)
    if raw is None:
        return None
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        message = f"Invalid input for query parameters {name}. Value: {raw}. "
        raise BadQuery(message + f"'{raw}' is not a 'date-time'") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _limit(params: dict[str, list[str]], max_limit: int) -> int:
    raw = _last(params, "limit")
    if raw is None:
        return max_limit
    if not re.fullmatch(r"[0-9]+", raw):
        raise BadQuery(
            f"Invalid input for query parameters limit. Value: {raw}. "
            f"'{raw}' does not match '^[0-9]*$'"
        )
    return min(int(raw), max_limit)


def _query(params: dict[str, list[str]], ctx: Context, all_tenants: bool) -> ListQuery | None:
    """Build the query; None when the answer is an empty list."""
    q = ListQuery(projects=frozenset({ctx.project_id}))
    if all_tenants:
        project = _last(params, "project_id") or _last(params, "tenant_id")
        q.projects = frozenset({project}) if project else None
    since = _time(params, "changes-since")
    before = _time(params, "changes-before") if ctx.version >= (2, 66) else None
    if since and before and since > before:
        raise BadQuery("The value of changes-since must be less than or equal to changes-before.")
    q.since, q.before = since, before
    if since or before:
        q.mode = "changes"
    if ctx.is_admin:
        q.uuid = _last(params, "uuid")
        if _bool(params, "deleted"):
            q.mode = "deleted"
    name = _last(params, "name")
    if name:
        try:
            q.name = re.compile(name)
        except re.error:
            q.name = re.compile(re.escape(name))
    return _with_statuses(q, params, ctx)


def _with_statuses(q: ListQuery, params: dict[str, list[str]], ctx: Context) -> ListQuery | None:
    """Apply ``status=``; unknown statuses (and DELETED for non-admins) match nothing."""
    statuses = {s.upper() for s in params.get("status", [])}
    if not statuses:
        return q
    if not statuses <= set(STATUSES) or ("DELETED" in statuses and not ctx.is_admin):
        return None
    if "DELETED" in statuses and q.mode == "default":
        q.mode = "deleted"
    q.statuses = frozenset(statuses)
    return q


def _next_link(url: str, detailed: bool, request: Request, marker: str) -> str:
    params = {k: v for k, v in request.params.items() if k != "marker"}
    params["marker"] = [marker]
    path = f"{url}/servers/detail" if detailed else f"{url}/servers"
    return f"{path}?{urlencode(params, doseq=True)}"


def list_servers(
    state: CloudState,
    region: Region,
    url: str,
    request: Request,
    ctx: Context,
    *,
    detailed: bool,
    fault: Fault,
) -> Result:
    """Status, body and number of servers returned for one listing request."""
    params = request.params
    try:
        limit = _limit(params, state.config.max_limit)
        all_tenants = bool(_bool(params, "all_tenants"))
        if all_tenants and not (ctx.is_admin or ctx.list_all):
            action = "detail" if detailed else "index"
            message = (
                f"Policy doesn't allow os_compute_api:servers:{action}:get_all_tenants "
                "to be performed."
            )
            return 403, views.fault_body(403, message), 0
        query = _query(params, ctx, all_tenants)
    except BadQuery as exc:
        return 400, views.fault_body(400, str(exc)), 0
    if query is None:
        return 200, {"servers": []}, 0
    marker = _last(params, "marker")
    # Only a listing with no parameter but all_tenants shows down cells' servers
    # (from 2.69, as UNKNOWN records, first); every other one skips them.
    unfiltered = set(params) <= {"all_tenants"} and ctx.version >= (2, 69)
    with state.lock:
        if _fails_on_down_cell(state, region, marker, unfiltered=unfiltered, fault=fault):
            return 500, views.fault_body(500), 0
        match = region.matcher(query, fault.hide_cell)
        down_page = region.down_records(query.projects, limit) if unfiltered else []
        try:
            rest = limit - len(down_page)
            page = down_page + region.page(match, rest, marker, since=query.since)
        except MarkerNotFound:
            return 400, views.fault_body(400, f"marker [{marker}] not found"), 0
        if fault.fail_page is not None:
            seen = region.count_through(match, marker) if marker else 0
            if (seen // limit + 1 if limit else 1) == fault.fail_page:
                return 500, views.fault_body(500), 0
        # Snapshot under the lock, render outside it.
        page = [s.copy() for s in page]
        down = [region.is_down(s, fault.hide_cell) for s in page]
    items = [_render(s, d, url, ctx, detailed) for s, d in zip(page, down, strict=True)]
    body: dict[str, object] = {"servers": items}
    if page and len(page) == limit:
        body["servers_links"] = [
            {"rel": "next", "href": _next_link(url, detailed, request, page[-1].id)}
        ]
    return 200, body, len(items)


def _fails_on_down_cell(
    state: CloudState, region: Region, marker: str | None, *, unfiltered: bool, fault: Fault
) -> bool:
    """True when a down cell makes this listing fail (caller holds the lock)."""
    if region.down_cells and not (unfiltered or state.config.skip_down_cells):
        return True  # list_records_by_skipping_down_cells=False
    server = region.servers.get(marker) if marker is not None else None
    return server is not None and region.is_down(server, fault.hide_cell)  # marker unreadable


def _render(
    server: FakeServer, down: bool, url: str, ctx: Context, detailed: bool
) -> dict[str, object]:
    if down:
        return views.down_detail(server, url) if detailed else views.down_summary(server, url)
    if detailed:
        return views.detail(server, url, ctx.version, is_admin=ctx.is_admin)
    return views.summary(server, url)
