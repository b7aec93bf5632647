"""A fake Keystone + Nova at the HTTP boundary, built on requests-mock.

Tokens come from keystoneauth1's own fixture, so the catalog and the access
info our code reads are the real shapes. Nova answers follow
shared/upstream-facts.md: 404 for other projects' servers unless admin,
403 for all_tenants unless allowed, paging with servers_links.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
import requests_mock
from falcon import testing
from keystoneauth1 import fixture
from keystoneauth1 import session as ksa_session
from keystoneauth1.identity import v3

from instanceapi.check.checker import Checker, RegionChecker
from instanceapi.config import RegionSpec, Settings
from instanceapi.http.app import create_app
from instanceapi.openstack import NovaRegion

FORBIDDEN = {
    "forbidden": {
        "code": 403,
        "message": "Policy doesn't allow "
        "os_compute_api:servers:detail:get_all_tenants to be performed.",
    }
}
PASSWORD = "s3cret-password-xyz"
#: A bearer token for the service's access control.
TOKEN = "t0ken-for-the-satellite-team-0123456789"
#: One cloud, every region it lists: what most in-process tests serve.
SETTINGS = Settings(regions=(RegionSpec("cloud"),))


def require_tool(name: str) -> str:
    """Return the path of an external tool; CI must have it, elsewhere its tests are skipped."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (.ci/run installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
    raise AssertionError("unreachable")


def nova_time(offset: float = 0.0) -> str:
    """Return Nova's clock now (+ offset s) as Nova shows it: whole seconds, UTC."""
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def not_found(server_id: str) -> dict[str, Any]:
    """Return Nova's 404 body for GET /servers/{id}."""
    return {"itemNotFound": {"code": 404, "message": f"Instance {server_id} could not be found."}}


def new_uuid() -> str:
    """Return a fresh version-4 UUID, as Nova makes them."""
    return str(uuid.uuid4())


@dataclass
class FakeCloud:
    """One region of a fake cloud: a Keystone and a Nova on made-up hosts."""

    mocker: requests_mock.Mocker
    name: str = "cloud"
    region: str = "RegionOne"
    roles: tuple[str, ...] = ("admin", "member", "reader")
    project_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    can_list_all: bool | None = None  # None: only when admin
    max_microversion: str = "2.96"
    page_size: int = 1000
    servers: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Ids of servers whose cell is down (shared facts, "a cell that is down").
    down: set[str] = field(default_factory=set)
    token_lifetime: dt.timedelta = dt.timedelta(hours=1)

    def __post_init__(self) -> None:
        host = f"{self.name}-{self.region}".lower()
        self.auth_url = f"http://keystone.{host}.test/v3"
        self.compute_url = f"http://nova.{host}.test/v2.1"
        self.mocker.post(
            f"{self.auth_url}/auth/tokens",
            json=self._token,
            status_code=201,
            headers={"X-Subject-Token": uuid.uuid4().hex},
        )
        self.mocker.get(self.auth_url, json=fixture.V3Discovery(self.auth_url))
        self.mocker.get(self.compute_url, json=self._version)
        self.mocker.get(
            re.compile(re.escape(self.compute_url) + r"/servers/detail"), json=self._listing
        )
        self.mocker.get(
            re.compile(re.escape(self.compute_url) + r"/servers(\?|$)"), json=self._listing
        )
        self.mocker.get(
            re.compile(re.escape(self.compute_url) + r"/servers/(?!detail)[^/?]+$"), json=self._show
        )

    # -- arranging state ------------------------------------------------------

    def add(
        self, status: str = "ACTIVE", *, project_id: str | None = None, server_id: str | None = None
    ) -> str:
        """Add a server (of our own project unless told) and return its id."""
        server_id = server_id or new_uuid()
        self.servers[server_id] = {
            "id": server_id,
            "name": f"vm-{server_id[:8]}",
            "status": status,
            "tenant_id": project_id or self.project_id,
            "OS-EXT-STS:vm_state": status.lower(),
            "links": [],
            "updated": nova_time(),
        }
        return server_id

    def fail(
        self, pattern: str, sequence: list[dict[str, Any]] | None = None, **response: Any
    ) -> None:
        """Make requests whose URL matches `pattern` answer `response` (or `sequence`)."""
        if sequence is not None:
            self.mocker.register_uri(requests_mock.ANY, re.compile(pattern), sequence)
        else:
            self.mocker.register_uri(requests_mock.ANY, re.compile(pattern), **response)

    def nova(self, *, retries: int = 0, timeout: float = 5.0) -> NovaRegion:
        """Return a real NovaRegion (keystoneauth1 + novaclient) pointed at this fake."""
        auth = v3.Password(
            auth_url=self.auth_url,
            username="svc",
            password=PASSWORD,
            user_domain_name="Default",
            project_name="svc",
            project_domain_name="Default",
        )
        session = ksa_session.Session(auth=auth, timeout=timeout, connect_retries=retries)
        return NovaRegion(
            cloud=self.name,
            region=self.region,
            session=session,
            interface="public",
            retries=retries,
        )

    def calls(self, method: str, fragment: str) -> int:
        """Count requests sent so far whose method and URL match."""
        return sum(
            1 for r in self.mocker.request_history if r.method == method and fragment in r.url
        )

    # -- answering ----------------------------------------------------------------

    def _token(self, request: requests.PreparedRequest, context: Any) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC)
        token = fixture.V3Token(
            project_id=self.project_id,
            project_name="svc",
            user_name="svc",
            issued=now,
            expires=now + self.token_lifetime,
        )
        for role in self.roles:
            token.add_role(name=role)
        service = token.add_service("compute")
        service.add_standard_endpoints(
            public=self.compute_url, internal=self.compute_url, region=self.region
        )
        return dict(token)

    def _version(self, request: Any, context: Any) -> dict[str, Any]:
        return {
            "version": {
                "id": "v2.1",
                "status": "CURRENT",
                "min_version": "2.1",
                "version": self.max_microversion,
                "links": [{"rel": "self", "href": self.compute_url + "/"}],
            }
        }

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    def _show(self, request: Any, context: Any) -> dict[str, Any]:
        context.headers["Date"] = email.utils.formatdate(usegmt=True)
        server_id = urlparse(request.url).path.rsplit("/", 1)[-1]
        server = self.servers.get(server_id)
        if server is not None and server_id in self.down and (self.is_admin or self.can_list_all):
            return {"server": self._unknown(server)}
        visible = server and (self.is_admin or server["tenant_id"] == self.project_id)
        if not visible or server["status"] == "DELETED":  # type: ignore[index]
            context.status_code = 404
            return not_found(server_id)
        return {"server": server}

    @staticmethod
    def _unknown(server: dict[str, Any]) -> dict[str, Any]:
        """Return a down cell's minimal record of a server."""
        keep = ("id", "tenant_id", "links")
        return {"status": "UNKNOWN", **{k: v for k, v in server.items() if k in keep}}

    def _listing(self, request: Any, context: Any) -> dict[str, Any]:
        context.headers["Date"] = email.utils.formatdate(usegmt=True)
        query = {k: v[-1] for k, v in parse_qs(urlparse(request.url).query).items()}
        allowed = self.is_admin if self.can_list_all is None else self.can_list_all
        if query.get("all_tenants") and not allowed:
            context.status_code = 403
            return FORBIDDEN
        since = query.get("changes-since")
        unfiltered = set(query) <= {"all_tenants"}
        stubs = [self._unknown(self.servers[i]) for i in self.down] if unfiltered else []
        rows = stubs + [
            s
            for s in self.servers.values()
            if s["id"] not in self.down
            and (since or s["status"] not in ("DELETED", "SOFT_DELETED"))
            and (query.get("all_tenants") or s["tenant_id"] == self.project_id)
            and (
                not since
                or dt.datetime.fromisoformat(s["updated"]) >= dt.datetime.fromisoformat(since)
            )
        ]
        start = 0
        if "marker" in query:
            start = [s["id"] for s in rows].index(query["marker"]) + 1
        limit = min(int(query.get("limit", self.page_size)), self.page_size)
        page = rows[start : start + limit]
        body: dict[str, Any] = {"servers": page}
        if len(page) == limit:
            body["servers_links"] = [{"rel": "next", "href": "http://elsewhere/next"}]
        return body


def checker_for(*clouds: FakeCloud, retries: int = 0) -> Checker:
    """Return a real Checker over NovaRegions pointed at the given fakes."""
    return Checker([RegionChecker(c.nova(retries=retries)) for c in clouds])


def client_for(*clouds: FakeCloud) -> testing.TestClient:
    """Return a test client of the real app (SETTINGS) over the given fakes."""
    return testing.TestClient(create_app(SETTINGS, checker=checker_for(*clouds)))


def body_text(response: Any) -> str:
    """Return a response body as text, whatever the test client calls it."""
    return response.text if hasattr(response, "text") else json.dumps(response.json)


# --- Satellite at a realistic size ----------------------------------------------

BIG_UUID = "7e3a0c1e-5d2b-4f6a-8c9d-{:012x}"


def big_satellite(sat, existing: set[str], *, vmware: int = 1150, guests: int = 150, gone: int = 6):
    """Fill `sat` with `vmware` VMware guests, then `guests` OpenStack guests, the last
    `gone` of them deleted from the cloud; add the others' UUIDs to `existing`.

    The gone guests have the highest host ids and the highest virt::uuid values, so
    they lie beyond the first 1,000 fact rows in host-id order and in value order.
    Return the gone host names.
    """
    for n in range(vmware):
        sat.add_host(
            f"esx-vm{n:04d}.example.com",
            uuid=f"{n:08x}-0000-4000-8000-000000000000",
            product="VMware Virtual Platform",
        )
    names = set()
    for n in range(guests):
        name = f"os-vm{n:03d}.cloud.example.com"
        sat.add_guest(name, BIG_UUID.format(n).upper())
        if n >= guests - gone:
            names.add(name)
        else:
            existing.add(BIG_UUID.format(n))
    return names
