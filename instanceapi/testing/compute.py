"""Nova's data for one region: servers in creation order, cells, and the listing query.

Not thread-safe by itself: callers hold the cloud's lock.

Listings come newest first (``created_at desc, id desc``, Nova's default order,
also with ``changes-since``, which is only a filter on ``updated_at``). A second
ordering by ``updated_at`` lets a ``changes-since`` page look only at the servers
that changed, so a steady-state poll of a big cloud costs O(changes), not O(N).
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import random
import re
import uuid
from collections.abc import Callable, Iterable

from instanceapi.testing.model import STATUSES, FakeServer

IMAGE_ID = "70a599e0-31e7-49b7-b260-868f441e862b"
HIDDEN_FROM_DEFAULT = frozenset({"DELETED", "SOFT_DELETED"})
#: A changes-since page gathers the changed servers when they are fewer than this
#: fraction of the servers it would otherwise walk past; else it walks, as before.
CHANGED_SHARE = 0.25


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
        #: (updated_at, id) of every server, ascending: who changed since when.
        self.by_update: list[tuple[dt.datetime, str]] = []
        #: Build requests: changes-since does not apply to them (see _state_matches).
        self.unscheduled: set[str] = set()
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
        self._index_update(server)
        self.set_stage(server, server.stage)

    def set_status(self, server: FakeServer, status: str, now: dt.datetime) -> None:
        """Move a stored server to ``status`` at ``now`` (see apply_status)."""
        self._unindex_update(server)
        apply_status(server, status, now)
        self._index_update(server)

    def touch(self, server: FakeServer, when: dt.datetime) -> None:
        """Set a stored server's ``updated_at`` (forwards, or back for a test's backdating)."""
        self._unindex_update(server)
        server.updated_at = when
        self._index_update(server)

    def set_stage(self, server: FakeServer, stage: str | None) -> None:
        """Set a stored server's build stage (see FakeServer.stage)."""
        server.stage = stage
        if stage == "unscheduled":
            self.unscheduled.add(server.id)
        else:
            self.unscheduled.discard(server.id)

    def _index_update(self, server: FakeServer) -> None:
        key = (server.updated_at, server.id)
        if not self.by_update or self.by_update[-1] < key:
            self.by_update.append(key)  # the usual case: the newest change
        else:
            bisect.insort(self.by_update, key)

    def _unindex_update(self, server: FakeServer) -> None:
        key = (server.updated_at, server.id)
        at = bisect.bisect_left(self.by_update, key)
        if at == len(self.by_update) or self.by_update[at] != key:
            raise RuntimeError(f"server {server.id}: updated_at changed behind the region's back")
        del self.by_update[at]

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
            self._index_update(server)
            ids.append(sid)
        return ids

    def purge_deleted(self) -> int:
        """Forget hard-deleted records; return how many."""
        keep = [s for s in self.order if not s.deleted]
        purged = len(self.order) - len(keep)
        self.order = keep
        self.servers = {s.id: s for s in keep}
        self.pos = {s.id: i for i, s in enumerate(keep)}
        self.by_update = sorted((s.updated_at, s.id) for s in keep)
        self.unscheduled &= self.servers.keys()
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
        if not self.down_cells:
            return out  # nothing is down: no need to walk every server
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
        *,
        since: dt.datetime | None = None,
    ) -> list[FakeServer]:
        """Up to ``limit`` matching servers after ``marker``, newest first.

        ``since`` (a changes-since value that ``match`` applies too) lets the
        page look at the servers changed since then only, when they are few.
        """
        if marker is not None and marker not in self.pos:
            raise MarkerNotFound(marker)
        start = self.pos[marker] - 1 if marker is not None else len(self.order) - 1
        if limit <= 0:
            return []
        changed = self._changed_positions(since, start) if since is not None else None
        positions = range(start, -1, -1) if changed is None else changed
        out: list[FakeServer] = []
        order = self.order
        for i in positions:
            server = order[i]
            if match(server):
                out.append(server)
                if len(out) >= limit:
                    break
        return out

    def _changed_positions(self, since: dt.datetime, start: int) -> list[int] | None:
        """Positions up to ``start`` of servers changed at or after ``since``, newest first.

        Build requests are included whatever their ``updated_at``. None when so
        many changed that walking the creation order is cheaper.
        """
        first = bisect.bisect_left(self.by_update, (since,))
        count = len(self.by_update) - first + len(self.unscheduled)
        if count > CHANGED_SHARE * (start + 1):
            return None
        pos = self.pos
        ids = [sid for _, sid in self.by_update[first:]]
        ids += self.unscheduled
        positions = {pos[sid] for sid in ids}
        return sorted((p for p in positions if p <= start), reverse=True)

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
