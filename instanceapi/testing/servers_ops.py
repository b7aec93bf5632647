"""Server, cell and microversion operations of SimulatedCloud (a mixin)."""

from __future__ import annotations

import datetime as dt
import random
import uuid

from instanceapi.testing.compute import Region, parse_version
from instanceapi.testing.model import FakeServer
from instanceapi.testing.state import CloudState


class ComputeOps:
    """Drive Nova's data: servers, cells, microversions, latency."""

    _state: CloudState

    def _region_name(self, region: str | None) -> str:
        name = region or self._state.first_region
        if name not in self._state.regions:
            raise KeyError(f"unknown region {name!r}")
        return name

    def _owner(self, project_id: str) -> str:
        for user in self._state.identity.users.values():
            if user.project_id == project_id:
                return user.id
        return uuid.uuid5(uuid.NAMESPACE_OID, project_id).hex

    def add_server(
        self,
        project: str = "alpha",
        status: str = "ACTIVE",
        region: str | None = None,
        server_id: str | None = None,
        name: str | None = None,
        cell: str = "cell1",
        stage: str | None = None,
    ) -> FakeServer:
        """Create a server; return a snapshot of it.

        ``stage="unscheduled"`` or ``"unlisted"`` creates it still being built
        (status BUILD; see FakeServer.stage); ``advance_build`` moves it on.
        """
        if stage not in (None, "unscheduled", "unlisted"):
            raise ValueError(f"unknown build stage {stage!r}")
        state = self._state
        with state.lock:
            reg = state.region(self._region_name(region))
            sid = server_id or str(uuid.uuid4())
            if sid in state.taken_ids:
                raise ValueError(f"server id {sid} was already used (Nova never reuses one)")
            project_id = state.identity.add_project(project)
            server = reg.make(
                server_id=sid,
                project_id=project_id,
                user_id=self._owner(project_id),
                status=status,
                name=name,
                cell=cell,
                now=state.clock.now(),
            )
            if stage is not None:
                reg.set_status(server, "BUILD", server.created_at)
                reg.set_stage(server, stage)
            state.taken_ids.add(sid)
            return server.copy()

    def populate(
        self,
        n: int,
        region: str | None = None,
        projects: tuple[str, ...] | list[str] = ("alpha", "beta", "gamma"),
        seed: int = 0,
    ) -> list[str]:
        """Add ``n`` ACTIVE servers quickly (deterministic for a given seed and history)."""
        state = self._state
        with state.lock:
            name = self._region_name(region)
            owners = []
            for project in projects:
                pid = state.identity.add_project(project)
                owners.append((pid, self._owner(pid)))
            rng = random.Random(f"{seed}:{name}:{len(state.taken_ids)}")  # noqa: S311
            start = state.clock.reserve(n)
            return state.regions[name].populate(n, owners, rng, state.taken_ids, start)

    def _find(self, server_id: str, region: str | None) -> tuple[Region, FakeServer]:
        regions = [self._region_name(region)] if region else list(self._state.regions)
        for name in regions:
            reg = self._state.regions[name]
            if server_id in reg.servers:
                return reg, reg.servers[server_id]
        raise KeyError(f"no server {server_id}")

    def set_status(self, server_id: str, status: str, region: str | None = None) -> FakeServer:
        """Move a server to ``status`` (bumps updated_at); return a snapshot."""
        with self._state.lock:
            reg, server = self._find(server_id, region)
            reg.set_status(server, status, self._state.clock.now())
            return server.copy()

    def advance_build(self, server_id: str, region: str | None = None) -> FakeServer:
        """Move a server being built on: unscheduled -> unlisted -> ACTIVE (updated now)."""
        with self._state.lock:
            reg, server = self._find(server_id, region)
            if server.stage == "unscheduled":
                reg.set_stage(server, "unlisted")
            elif server.stage == "unlisted":
                reg.set_stage(server, None)
                reg.set_status(server, "ACTIVE", self._state.clock.now())
            return server.copy()

    def backdate(self, server_id: str, seconds: float, region: str | None = None) -> None:
        """Make a server look unchanged for ``seconds`` (its updated_at moves back)."""
        with self._state.lock:
            reg, server = self._find(server_id, region)
            reg.touch(server, server.updated_at - dt.timedelta(seconds=seconds))

    def skip_down_cells(self, skip: bool = True) -> None:
        """Set Nova's ``[api] list_records_by_skipping_down_cells`` (False: 500 instead)."""
        self._state.config.skip_down_cells = skip

    def delete_server(self, server_id: str, region: str | None = None) -> None:
        """Delete a server outright (GET answers 404 from now on)."""
        with self._state.lock:
            reg, server = self._find(server_id, region)
            if not server.deleted:
                reg.set_status(server, "DELETED", self._state.clock.now())

    def begin_delete(self, server_id: str, region: str | None = None) -> None:
        """The first second after DELETE: still answered, ``task_state: deleting``."""
        with self._state.lock:
            reg, server = self._find(server_id, region)
            server.task_state = "deleting"
            reg.touch(server, self._state.clock.now())

    def soft_delete_server(self, server_id: str, region: str | None = None) -> None:
        """Soft-delete a server (status SOFT_DELETED, still answered by GET)."""
        self.set_status(server_id, "SOFT_DELETED", region)

    def purge_deleted(self, region: str | None = None) -> int:
        """Forget deleted records of a region (None: every region); return how many."""
        with self._state.lock:
            names = [self._region_name(region)] if region else list(self._state.regions)
            return sum(self._state.regions[name].purge_deleted() for name in names)

    def set_cell_down(self, cell: str, down: bool = True, region: str | None = None) -> None:
        """Make a cell (un)reachable."""
        with self._state.lock:
            cells = self._state.region(self._region_name(region)).down_cells
            if down:
                cells.add(cell)
            else:
                cells.discard(cell)

    def set_max_microversion(self, version: str, region: str | None = None) -> None:
        """Simulate an older (or newer) Nova."""
        parsed = parse_version(version)
        with self._state.lock:
            self._state.region(self._region_name(region)).max_microversion = parsed

    def set_latency(self, nova_latency: float, per_server_latency: float = 0.0) -> None:
        """Change Nova's simulated latency."""
        self._state.config.nova_latency = nova_latency
        self._state.config.per_server_latency = per_server_latency

    def servers(self, region: str | None = None) -> list[FakeServer]:
        """Snapshots of every server of a region, deleted ones included, oldest first."""
        with self._state.lock:
            return [s.copy() for s in self._state.region(self._region_name(region)).order]

    def server(self, server_id: str, region: str | None = None) -> FakeServer:
        """Snapshot of one server (KeyError if unknown or purged)."""
        with self._state.lock:
            return self._find(server_id, region)[1].copy()
