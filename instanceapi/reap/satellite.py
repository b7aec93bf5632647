"""Foreman (Satellite) API v2 client: the few calls reap needs.

How hosts are read, and why. For thousands of hosts the number of requests must
not grow with the number of hosts, so reap reads three paged listings:

- `GET /api/v2/hosts?search=<scope>&order=id asc`: ids, names, the compute resource
  link, organization and location ids and Katello's registration of every host in
  scope. Ordering by the primary key keeps offset pagination stable while hosts come
  and go: a concurrent change can at worst move a host across a page boundary, so it
  is missed this run (kept), never confused.
- `GET /api/v2/fact_values?search=fact = <name>&order=host_id asc`, once for
  `virt::uuid` and once for the DMI product name, narrowed to the run's organization
  and location ids when the scope names them. Results are keyed by host name and
  joined to the hosts listing; a fact missing for any reason means "skip".
  NOTE: fact_values pages count rows, but `subtotal` is the number of hosts in the
  page returned, so it says nothing about how many pages there are: reap reads
  until a page comes back empty. The default order is by value, which is not unique
  (every OpenStack guest says "OpenStack Compute"), so offset pages could overlap or
  miss rows; ordering by host id makes each row's position unique. `per_page=all`
  is `LIMIT 0` there and is never sent.

Per host, and only for the few hosts about to be deleted: `GET /api/v2/hosts/:id`
(parameters, compute resource, registration, last check-in), its `virt::uuid`
re-read, `GET /api/v2/hosts/:id/parameters` to prove the user can see parameters,
and after the DELETE a `GET` that must answer 404: Katello answers 200 to a DELETE
even when the record survived. Reads retry a few times on errors; a listing that
still fails aborts the whole run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import requests

from instanceapi.reap import capped
from instanceapi.reap.model import Host, HostDetail

Progress = Callable[[str, int, int], None]
_MAX_PAGES = 100_000


class SatelliteError(Exception):
    """The Satellite API could not be read or refused a change; the message says why."""


class _Forbidden(SatelliteError):
    """403: the API user lacks the permission."""


class _NotFound(SatelliteError):
    """404: no such record."""


def build_session(user: str, secret: str, ca_bundle: str | None = None) -> requests.Session:
    """Return a session with basic auth (password or personal access token) and TLS trust."""
    session = requests.Session()
    session.auth = (user, secret)
    session.verify = ca_bundle or True
    session.headers["Accept"] = "application/json,version=2"
    session.headers["User-Agent"] = "instanceapi-reap"
    return session


class SatelliteClient:
    """Read hosts and facts, re-read one host, delete one host."""

    def __init__(
        self,
        base_url: str,
        session: requests.Session,
        *,
        per_page: int = 500,
        timeout: float = 60.0,
        retries: int = 2,
        sleep: Callable[[float], None] = time.sleep,
        max_bytes: int = capped.SATELLITE_MAX_BYTES,
    ) -> None:
        """Talk to the Satellite at `base_url` (for example https://satellite.example.com)."""
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.max_bytes = max_bytes
        self.per_page = per_page
        self.timeout = timeout
        self.retries = retries
        self._sleep = sleep

    def hosts(self, search: str = "", progress: Progress | None = None) -> list[Host]:
        """Return every host matching the Foreman `search` (all hosts when empty)."""
        params = {"search": search, "order": "id asc"}
        found: dict[int, Host] = {}
        for body in self._pages("/api/v2/hosts", params, "reading hosts", progress):
            for item in _expect(body.get("results"), list, "hosts results"):
                host = _host(item)
                found[host.id] = host
        return list(found.values())

    def fact_values(
        self, fact: str, progress: Progress | None = None, narrow: str = ""
    ) -> dict[str, str]:
        """Return {host name: value} of the fact named `fact` for every host that has it.

        `narrow` is extra search ("organization_id = 3") ANDed to the fact's name.
        """
        search = f"fact = {fact}" + (f" and {narrow}" if narrow else "")
        params = {"search": search, "order": "host_id asc"}
        values: dict[str, str] = {}
        label = f"reading {fact}"
        for body in self._pages("/api/v2/fact_values", params, label, progress, rows=True):
            for name, facts in _expect(body.get("results"), dict, "fact results").items():
                value = _expect(facts, dict, "host facts").get(fact)
                if isinstance(value, str):
                    values[str(name)] = value
        return values

    def host_fact(self, host_id: int, fact: str) -> str | None:
        """Re-read one host's fact (`host = <id>` is a host id in a fact search)."""
        params = {"search": f"host = {host_id} and fact = {fact}", "per_page": "20"}
        body = self._get("/api/v2/fact_values", params)
        for facts in _expect(body.get("results"), dict, "fact results").values():
            value = _expect(facts, dict, "host facts").get(fact)
            if isinstance(value, str):
                return value
        return None

    def host_detail(self, host_id: int, uuid_fact: str = "virt::uuid") -> HostDetail:
        """Re-read one host: name, links, parameters, registration, check-in, virt::uuid."""
        body = self._get(f"/api/v2/hosts/{host_id}", {})
        return replace(_detail(body), uuid=self.host_fact(host_id, uuid_fact))

    def can_read_parameters(self, host_id: int) -> bool | None:
        """Return whether the API user may read host parameters (Foreman's view_params).

        None when the host is gone (404), so it tells nothing.
        """
        path = f"/api/v2/hosts/{host_id}/parameters"
        try:
            self._get(path, {"per_page": "1"})
        except _Forbidden:
            return False
        except _NotFound:
            return None
        return True

    def delete_host(self, host_id: int) -> None:
        """Delete one host record; raise SatelliteError unless a later GET answers 404.

        Katello answers 200 to the DELETE even when the record survived the destroy.
        """
        url = f"{self.base_url}/api/v2/hosts/{host_id}"
        try:
            resp = capped.request(
                self.session, "DELETE", url, limit=self.max_bytes,
                timeout=self.timeout, allow_redirects=False,
            )  # fmt: skip
        except requests.RequestException as ex:
            raise SatelliteError(f"DELETE host {host_id}: {ex}") from ex
        if resp.status_code not in (200, 202, 204):
            raise SatelliteError(f"DELETE host {host_id}: {_describe(resp)}")
        try:
            self._get(f"/api/v2/hosts/{host_id}", {})
        except _NotFound:
            return
        except SatelliteError as ex:
            raise SatelliteError(f"DELETE host {host_id} answered 200, unproven: {ex}") from ex
        raise SatelliteError(f"DELETE host {host_id} answered 200, but the record is still there")

    def _pages(
        self,
        path: str,
        params: dict[str, str],
        label: str,
        progress: Progress | None,
        *,
        rows: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Yield every page; fact values (`rows`) until an empty page, hosts by subtotal."""
        seen = 0
        for page in range(1, _MAX_PAGES):
            body = self._get(path, {**params, "page": str(page), "per_page": str(self.per_page)})
            results = body.get("results") or {}
            if not results:
                return
            seen += len(results)
            subtotal = seen if rows else _int(body, "subtotal")
            if progress is not None:
                progress(label, seen, subtotal)
            yield body
            if not rows and page * self.per_page >= subtotal:
                return
        raise SatelliteError(f"{path}: more than {_MAX_PAGES} pages")

    def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self._sleep(min(2.0**attempt, 30.0))
            try:
                resp = capped.request(
                    self.session, "GET", self.base_url + path, limit=self.max_bytes,
                    params=params, timeout=self.timeout,
                )  # fmt: skip
            except requests.RequestException as ex:
                last = str(ex)
                continue
            if resp.status_code == 200:
                return _json_object(resp, path)
            last = _describe(resp)
            if resp.status_code in (403, 404):
                raise (_Forbidden if resp.status_code == 403 else _NotFound)(f"GET {path}: {last}")
            if resp.status_code < 500:
                break  # 4xx will not get better by asking again
        raise SatelliteError(f"GET {path}: {last}")


def _json_object(resp: requests.Response, path: str) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError as ex:
        raise SatelliteError(f"GET {path}: response is not JSON") from ex
    checked: dict[str, Any] = _expect(body, dict, f"{path} response")
    return checked


def _expect(value: Any, kind: type, what: str) -> Any:
    if not isinstance(value, kind):
        raise SatelliteError(f"unexpected {what}: {type(value).__name__}, not {kind.__name__}")
    return value


def _int(body: dict[str, Any], key: str) -> int:
    try:
        return int(body[key])
    except (KeyError, TypeError, ValueError) as ex:
        raise SatelliteError(f"page without a usable {key!r}") from ex


def _host(item: Any) -> Host:
    item = _expect(item, dict, "host")
    try:
        facet = _facet(item)
        return Host(
            id=int(item["id"]),
            name=str(item["name"]),
            compute_resource_id=_optional_int(item.get("compute_resource_id")),
            organization_id=_optional_int(item.get("organization_id")),
            location_id=_optional_int(item.get("location_id")),
            registration=_optional_str(facet.get("uuid")),
            registered_at=_optional_str(facet.get("registered_at")),
        )
    except (KeyError, TypeError, ValueError) as ex:
        raise SatelliteError(f"host without a usable id or name: {ex}") from ex


def _detail(body: dict[str, Any]) -> HostDetail:
    params: dict[str, str] = {}
    # Inherited parameters first, so the host's own value wins.
    for key in ("all_parameters", "parameters"):
        for item in body.get(key) or []:
            if isinstance(item, dict) and "name" in item:
                params[str(item["name"])] = str(item.get("value", ""))
    facet = _facet(body)
    try:
        return HostDetail(
            id=int(body["id"]),
            name=str(body["name"]),
            compute_resource_id=_optional_int(body.get("compute_resource_id")),
            parameters=params,
            last_checkin=parse_time(facet.get("last_checkin")),
            registration=_optional_str(facet.get("uuid")),
            registered_at=_optional_str(facet.get("registered_at")),
        )
    except (KeyError, TypeError, ValueError) as ex:
        raise SatelliteError(f"host detail without a usable id or name: {ex}") from ex


def _facet(body: dict[str, Any]) -> dict[str, Any]:
    facet = body.get("subscription_facet_attributes")
    return facet if isinstance(facet, dict) else {}


def _optional_int(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


def _optional_str(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def parse_time(value: Any) -> datetime | None:
    """Parse Foreman's "2024-05-01 10:11:12 UTC" or ISO 8601; None if absent or unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().removesuffix(" UTC").replace("Z", "+00:00")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _describe(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        body = resp.text[:200]
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        error = error.get("message") or error.get("full_messages") or ""
    message = str(error or "")[:300]
    return f"HTTP {resp.status_code}" + (f": {message}" if message else "")
