"""Nova's data for one region: servers in creation order, cells, and the listing query.

Not thread-safe by itself: callers hold the cloud's lock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import re
import uuid
from collections.abc import Callable, Iterable

from instanceapi.testing.model import STATUSES, FakeServer

IMAGE_ID = "70a599e0-31e7-49b7-b260-868f441e862b"
HIDDEN_FROM_DEFAULT = frozenset({"DELETED", "SOFT_DELETED"})


class MarkerNotFound(Exception):
    """The listing marker names no server (Nova answers 400)."""


@dataclasses.dataclass(slots=True)
class ListQuery:
    """What a listing selects, after Nova's policy has been applied."""

    projects: frozenset[str] | None = None  # None: every project
    mode: str = "default"  # "default" | "changes" (changes-since/before) | "deleted"
    since: dt.datetime | None = None
    before: dt.datetime | None = None
    statuses: frozenset[str] | None = None
    uuid: str | None = None
    name: re.Pattern[str] | None = None


def parse_version(text: str) -> tuple[int, int]:
    """``"2.96"`` -> ``(2, 96)``; ValueError when malformed."""
    match = re.fullmatch(r"([1-9]\d*)\.(0|[1-9]\d*)", text.strip())
    if not match:
        raise ValueError(f"malformed version {text!r}")
    return int(match.group(1)), int(match.group(2))


def apply_status(server: FakeServer, status: str, now: dt.datetime) -> None:
    """Put ``server`` into ``status`` the way Nova's states move together."""
    status = status.upper()
    if status not in STATUSES:
        raise ValueError(f"unknown server status {status!r}")
    server.status = status
    server.vm_state, server.power_state, server.task_state = STATUSES[status]
    server.updated_at = now
    if status == "SHELVED_OFFLOADED":
        server.host = None
    elif server.host is None and status != "DELETED":
        server.host = _host_for(server.id, server.region)
    if server.launched_at is None and status not in ("BUILD", "DELETED", "ERROR"):
        server.launched_at = now
    if status == "DELETED":
        server.deleted_at = now


def _host_for(server_id: str, region: str) -> str:
    return f"compute-{int(server_id[:2], 16) % 8:02d}.{region.lower()}.example"


class Region:
    """Servers of one Nova region."""

    def __init__(self, name: str, max_microversion: str) -> None:
        self.name = name
        self.max_microversion = parse_version(max_microversion)
        self.servers: dict[str, FakeServer] = {}
        self.order: list[FakeServer] = []  # ascending (created_at, id)
        self.pos: dict[str, int] = {}
        self.down_cells: set[str] = set()

    def make(
        self,
        *,
        server_id: str,
        project_id: str,
        user_id: str,
        status: str,
        name: str | None,
        cell: str,
        now: dt.datetime,
    ) -> FakeServer:
        """Create a server record in ``status`` and store it."""
        server = FakeServer(
            id=server_id,
            name=name or f"vm-{server_id[:8]}",
            project_id=project_id,
            user_id=user_id,
            status="BUILD",
            vm_state="building",
            task_state=None,
            created_at=now,
            updated_at=now,
            deleted_at=None,
            cell=cell,
            host=None,
            region=self.name,
            image_id=IMAGE_ID,
        )
        apply_status(server, status, now)
        self.insert(server)
        return server

    def insert(self, server: FakeServer) -> None:
        """Store a server; it must be newer than every stored one."""
        if self.order and (server.created_at, server.id) < (
            self.order[-1].created_at,
            self.order[-1].id,
        ):
            raise ValueError("servers must be inserted in creation order")
        self.servers[server.id] = server
        self.pos[server.id] = len(self.order)
        self.order.append(server)

    def populate(
        self,
        n: int,
        projects: list[tuple[str, str]],
        rng: random.Random,
        taken: set[str],
        start: dt.datetime,
    ) -> list[str]:
        """Append ``n`` ACTIVE servers with consecutive creation times."""
        step = dt.timedelta(microseconds=1)
        ids: list[str] = []
        for i in range(n):
            sid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            while sid in taken:
                sid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            taken.add(sid)
            project_id, user_id = projects[rng.randrange(len(projects))]
            when = start + step * i
            server = FakeServer(
                id=sid,
                name=f"vm-{sid[:8]}",
                project_id=project_id,
                user_id=user_id,
                status="ACTIVE",
                vm_state="active",
                task_state=None,
                created_at=when,
                updated_at=when,
                deleted_at=None,
                cell="cell1",
                host=_host_for(sid, self.name),
                region=self.name,
                launched_at=when,
                image_id=IMAGE_ID,
            )
            self.servers[sid] = server
            self.pos[sid] = len(self.order)
            self.order.append(server)
            ids.append(sid)
        return ids

    def purge_deleted(self) -> int:
        """Forget hard-deleted records; return how many."""
        keep = [s for s in self.order if not s.deleted]
        purged = len(self.order) - len(keep)
        self.order = keep
        self.servers = {s.id: s for s in keep}
        self.pos = {s.id: i for i, s in enumerate(keep)}
        return purged

    def is_down(self, server: FakeServer, hidden_cell: str | None) -> bool:
        """True when the server's cell cannot be reached (a build request has no cell yet)."""
        if server.stage == "unscheduled":
            return False
        return server.cell in self.down_cells or server.cell == hidden_cell

    def matcher(self, q: ListQuery, hidden_cell: str | None) -> Callable[[FakeServer], bool]:
        """Predicate selecting the servers a listing returns from the cells that answer.

        Servers of unreachable cells are skipped silently (Nova 34 with the
        default ``list_records_by_skipping_down_cells``); see ``down_records``.
        """

        def match(s: FakeServer) -> bool:
            if q.projects is not None and s.project_id not in q.projects:
                return False
            if q.uuid is not None and s.id != q.uuid:
                return False
            if self.is_down(s, hidden_cell):
                return False
            return _state_matches(s, q)

        return match

    def down_records(self, projects: frozenset[str] | None, limit: int) -> list[FakeServer]:
        """Servers of down cells an unfiltered listing shows first (>= 2.69), up to ``limit``.

        Only the API database's instance mappings are readable: not deleted ones.
        """
        out: list[FakeServer] = []
        for server in reversed(self.order):
            if len(out) >= limit:
                break
            mine = projects is None or server.project_id in projects
            if mine and self.is_down(server, None) and not server.deleted:
                out.append(server)
        return out

    def page(
        self,
        match: Callable[[FakeServer], bool],
        limit: int,
        marker: str | None,
    ) -> list[FakeServer]:
        """Up to ``limit`` matching servers after ``marker``, newest first."""
        if marker is not None and marker not in self.pos:
            raise MarkerNotFound(marker)
        start = self.pos[marker] - 1 if marker is not None else len(self.order) - 1
        out: list[FakeServer] = []
        if limit <= 0:
            return out
        order = self.order
        for i in range(start, -1, -1):
            server = order[i]
            if match(server):
                out.append(server)
                if len(out) >= limit:
                    break
        return out

    def count_through(self, match: Callable[[FakeServer], bool], marker: str) -> int:
        """How many matching servers a client has seen up to and including ``marker``."""
        first = self.pos[marker]
        return sum(1 for s in _desc(self.order, first) if match(s))


def _desc(order: list[FakeServer], stop: int) -> Iterable[FakeServer]:
    for i in range(len(order) - 1, stop - 1, -1):
        yield order[i]


def _state_matches(s: FakeServer, q: ListQuery) -> bool:
    # Asking for status=SOFT_DELETED is the one way to list those by default.
    asked_soft = s.status == "SOFT_DELETED" and s.status in (q.statuses or ())
    if q.mode == "default" and s.status in HIDDEN_FROM_DEFAULT and not asked_soft:
        return False
    if q.mode == "deleted" and s.status not in HIDDEN_FROM_DEFAULT:
        return False
    if s.stage == "unscheduled":
        # A build request: changes-since/before do not apply to it (Nova's
        # BuildRequestList.get_by_filters ignores them; updated_at is not set yet).
        return q.mode != "deleted" and _plain_matches(s, q)
    if s.stage == "unlisted" and q.mode == "changes":
        return False  # in its cell, never updated: updated_at is NULL
    if q.since is not None and s.updated_at < q.since:
        return False
    if q.before is not None and s.updated_at > q.before:
        return False
    return _plain_matches(s, q)


def _plain_matches(s: FakeServer, q: ListQuery) -> bool:
    if q.statuses is not None and s.status not in q.statuses:
        return False
    return q.name is None or bool(q.name.search(s.name))
