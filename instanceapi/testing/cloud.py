"""SimulatedCloud: Keystone v3 + Nova over real HTTP on 127.0.0.1, driven from Python."""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from pathlib import Path
from types import TracebackType

from instanceapi.testing import keystone, nova
from instanceapi.testing.control import make_control_app
from instanceapi.testing.httpd import App, Listener, Request, Response
from instanceapi.testing.model import Fault, RequestRecord
from instanceapi.testing.servers_ops import ComputeOps
from instanceapi.testing.state import CloudState, Config

BUILTIN_PROJECTS = ("admin", "alpha", "beta", "gamma")
# name, password, project, roles, may list all projects. Test fixtures, not secrets.
BUILTIN_USERS = (
    ("admin", "admin-secret", "admin", ("admin", "member", "reader"), False),
    ("member", "member-secret", "alpha", ("member", "reader"), False),
    ("reader", "reader-secret", "alpha", ("reader",), False),
    ("reader-all", "reader-all-secret", "alpha", ("reader",), True),
)
SERVICES = ("keystone", "nova")


class SimulatedCloud(ComputeOps):
    """A fake OpenStack cloud (Keystone + one Nova per region) for tests, demos, benchmarks."""

    def __init__(
        self,
        regions: tuple[str, ...] | list[str] = ("RegionOne",),
        max_microversion: str = "2.96",
        max_limit: int = 1000,
        token_ttl: float = 3600.0,
        nova_latency: float = 0.0,
        per_server_latency: float = 0.0,
        *,
        port_base: int | None = None,
    ) -> None:
        config = Config(max_limit, token_ttl, nova_latency, per_server_latency)
        self._state = CloudState(tuple(regions), max_microversion, config)
        self._port_base = port_base
        self._keystone: Listener | None = None
        self._control: Listener | None = None
        self._nova: dict[str, Listener] = {}
        identity = self._state.identity
        for project in BUILTIN_PROJECTS:
            identity.add_project(project)
        for name, password, project, roles, list_all in BUILTIN_USERS:
            identity.add_user(name, password, project, roles, list_all)

    # -- lifecycle --------------------------------------------------------

    def _port(self, offset: int) -> int:
        return 0 if self._port_base is None else self._port_base + offset

    def start(self) -> SimulatedCloud:
        """Start the Keystone, control and per-region Nova listeners."""
        if self._keystone is not None:
            return self
        state = self._state
        state.stopping.clear()
        control = make_control_app(self)
        ks_app = keystone.make_app(state)
        self._keystone = Listener(_mount_control(control, ks_app), self._port(0), "keystone")
        self._keystone.start()
        state.keystone_url = self._keystone.url
        for i, region in enumerate(state.regions, start=1):
            listener = Listener(nova.make_app(state, region), self._port(i), f"nova-{region}")
            listener.start()
            self._nova[region] = listener
            state.nova_urls[region] = f"{listener.url}/v2.1"
        self._control = Listener(control, self._port(len(state.regions) + 1), "control")
        self._control.start()
        for key, fault in self._state.faults.items():  # faults set before start()
            if fault.down:
                listener = self._keystone if key == "keystone" else self._nova[key[5:]]
                listener.set_down(True)
        return self

    def stop(self) -> None:
        """Stop every listener and cut open connections."""
        self._state.stopping.set()
        listeners = [x for x in (self._keystone, self._control, *self._nova.values()) if x]
        stoppers = [threading.Thread(target=x.stop, name="simcloud-stop") for x in listeners]
        for thread in stoppers:  # in parallel: each waits up to one poll interval
            thread.start()
        for thread in stoppers:
            thread.join()
        self._keystone = self._control = None
        self._nova = {}

    def __enter__(self) -> SimulatedCloud:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses --------------------------------------------------------

    @property
    def auth_url(self) -> str:
        """Keystone v3 URL, ``http://127.0.0.1:<port>/v3``."""
        return f"{self._require(self._keystone).url}/v3"

    @property
    def control_url(self) -> str:
        """Dedicated control listener (``/_sim/...``), never faulted."""
        return self._require(self._control).url

    def nova_url(self, region: str | None = None) -> str:
        """Nova endpoint of a region, ``http://127.0.0.1:<port>/v2.1``."""
        self._require(self._keystone)
        return self._state.nova_urls[self._region_name(region)]

    @property
    def regions(self) -> tuple[str, ...]:
        """Region names, first is the default."""
        return tuple(self._state.regions)

    @staticmethod
    def _require(listener: Listener | None) -> Listener:
        if listener is None:
            raise RuntimeError("the simulated cloud is not started")
        return listener

    # -- identity ---------------------------------------------------------

    @property
    def projects(self) -> dict[str, str]:
        """Project name -> id."""
        with self._state.lock:
            return dict(self._state.identity.projects)

    def project_id(self, name: str) -> str:
        """Id of a project name (KeyError if unknown)."""
        return self.projects[name]

    def add_project(self, name: str) -> str:
        """Create a project; return its id."""
        with self._state.lock:
            return self._state.identity.add_project(name)

    def user_id(self, name: str) -> str:
        """Id of a user name."""
        with self._state.lock:
            return self._state.identity.users[name].id

    def user_project(self, user: str) -> str:
        """Name of the project a user's roles (and tokens) are on."""
        with self._state.lock:
            identity = self._state.identity
            return identity.project_name(identity.users[user].project_id)

    def password(self, user: str) -> str:
        """Password of a user (test fixture)."""
        with self._state.lock:
            return self._state.identity.users[user].password

    def add_user(
        self,
        name: str,
        password: str,
        project: str,
        roles: tuple[str, ...] | list[str],
        list_all_projects: bool = False,
    ) -> str:
        """Create a user with roles on ``project`` (created if needed); return its id."""
        with self._state.lock:
            return self._state.identity.add_user(
                name, password, project, roles, list_all_projects
            ).id

    def add_application_credential(
        self,
        user: str,
        secret: str,
        *,
        name: str | None = None,
        roles: list[str] | None = None,
        access_rules: list[dict[str, str]] | None = None,
    ) -> str:
        """Create an application credential of ``user``; return its id."""
        with self._state.lock:
            return self._state.identity.add_app_credential(
                user, secret, name, roles, access_rules
            ).id

    def expire_tokens(self) -> None:
        """Every token issued so far is expired from now on."""
        with self._state.lock:
            self._state.identity.expire_all(self._state.clock.now())

    def revoke_tokens(self) -> None:
        """Every token issued so far is revoked."""
        with self._state.lock:
            self._state.identity.revoke_all()

    # -- observation and faults -------------------------------------------

    @property
    def counts(self) -> Counter[str]:
        """Request counters (a copy)."""
        return self._state.stats.snapshot()[0]

    @property
    def requests(self) -> list[RequestRecord]:
        """The last 10,000 requests as (service, method, path_with_query, status)."""
        return self._state.stats.snapshot()[1]

    def reset_counts(self) -> None:
        """Zero the counters and empty the request log."""
        self._state.stats.reset()

    def fault(
        self,
        service: str,
        *,
        region: str | None = None,
        down: bool = False,
        status: int | None = None,
        delay: float = 0.0,
        garbage: bool = False,
        fail_page: int | None = None,
        hide_cell: str | None = None,
        retry_after: int = 1,
        replay_pages: bool = False,
        bad_item: bool = False,
    ) -> None:
        """Replace the fault of Keystone or of one region's Nova."""
        if service not in SERVICES:
            raise ValueError(f"service must be one of {SERVICES}")
        name = self._region_name(region) if service == "nova" else None
        new = Fault(
            down,
            status,
            delay,
            garbage,
            fail_page,
            hide_cell,
            retry_after,
            replay_pages=replay_pages,
            bad_item=bad_item,
        )
        with self._state.lock:
            self._state.faults[CloudState.fault_key(service, name)] = new
        listener = self._keystone if service == "keystone" else self._nova.get(name or "")
        if listener is not None:
            listener.set_down(down)

    def clear_faults(self) -> None:
        """Remove every fault; listeners that were down come back on their ports."""
        with self._state.lock:
            self._state.faults.clear()
        for listener in (self._keystone, *self._nova.values()):
            if listener is not None:
                listener.set_down(False)

    def faults(self) -> dict[str, dict[str, object]]:
        """Active faults by listener ("keystone", "nova@RegionOne")."""
        with self._state.lock:
            return {k: dataclasses.asdict(v) for k, v in self._state.faults.items() if v.active}

    def write_clouds_yaml(
        self,
        path: str | Path,
        *,
        cloud_name: str = "demo",
        user: str = "admin",
        regions: list[str] | None = None,
        application_credential: tuple[str, str] | dict[str, str] | None = None,
    ) -> Path:
        """Write (or merge into) a clouds.yaml for openstack.config; return its path."""
        from instanceapi.testing.cloudsyaml import write_clouds_yaml

        return write_clouds_yaml(
            self,
            Path(path),
            cloud_name=cloud_name,
            user=user,
            regions=regions,
            application_credential=application_credential,
        )


def _mount_control(control: App, keystone_app: App) -> App:
    """Serve ``/_sim/`` (unfaulted, uncounted) next to Keystone."""

    def app(request: Request) -> Response:
        if request.path == "/_sim" or request.path.startswith("/_sim/"):
            return control(request)
        return keystone_app(request)

    return app
