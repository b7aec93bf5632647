"""One region's servers, held in memory: the fast path, and the listing rule's evidence.

A full sync reads every page of the all-project listing; after that,
``changes-since`` listings add new and changed servers and mark deleted ones.
Nova does not keep deleted records forever, so a full sync is repeated every
``resync_interval``. Readers never wait: each refresh builds a new table and
swaps it in whole, and a refresh that fails leaves the last good table.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from instanceapi.openstack import Compute, UpstreamError

# Nova's status words live with its JSON; re-exported for the checkers.
from instanceapi.openstack.records import DELETED as DELETED
from instanceapi.openstack.records import UNKNOWN as UNKNOWN

#: Subtracted from our clock before asking changes-since: tolerates clock skew
#: between this host and Nova's database, at the cost of re-reading a minute.
SKEW_MARGIN = 60.0
#: changes-since the epoch also returns soft-deleted (restorable) servers, which
#: the default listing leaves out; the listing rule must not miss them.
EVERYTHING = "1970-01-01T00:00:00Z"


def iso(timestamp: float) -> str:
    """Return a UTC ISO 8601 timestamp as Nova's changes-since expects it."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class IndexState:
    """What readers see: a status per server id, and deletions seen since the last full sync."""

    statuses: dict[str, str]
    deleted_seen: dict[str, float]
    synced_from: float | None = None  # our monotonic clock when the newest listing started
    full_from: float | None = None
    full_since: str | None = None  # the changes-since of the last full sync
    #: Nova's clock minus our wall clock, measured as the newest listing ended (None: unknown).
    nova_offset: float | None = None
    #: Why a listing of this table may have skipped servers (a cell down), None if none.
    incomplete: str | None = None
    #: Our wall clock when the newest listing started: where the next changes-since starts.
    synced_wall: float | None = None


class ServerIndex:
    """Statuses of every server of one region, by lower-case id.

    NOTE: every "which came first / how old" comparison uses `clock`, a monotonic
    one: an NTP step of the wall clock must not make a listing read before a
    question look newer than it. The wall clock (`wall`), corrected by Nova's
    Date header, only builds changes-since values.
    """

    def __init__(
        self,
        nova: Compute,
        *,
        resync_interval: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        #: This region's Nova client.
        self.nova = nova
        self._resync_interval = resync_interval
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._state = IndexState({}, {})
        self.failures = 0
        self.last_error: str | None = None
        #: Why no one keeps this index fresh (never, in memory: the refresher is us).
        self.down: str | None = None

    # -- reading (never blocks) --------------------------------------------------

    def peek(self, uuid: str) -> str | None:
        """Return the server's status in the current table, None if it is not listed."""
        return self._state.statuses.get(uuid)

    def listed_among(self, uuids: set[str]) -> set[str]:
        """Return those of `uuids` the current table lists as existing (not DELETED/UNKNOWN)."""
        statuses = self._state.statuses
        return {u for u in uuids & statuses.keys() if statuses[u] not in (DELETED, UNKNOWN)}

    def deleted_at(self, uuid: str) -> float | None:
        """Return when a changes-since listing reported this server DELETED, if it did."""
        return self._state.deleted_seen.get(uuid)

    @property
    def incomplete(self) -> str | None:
        """Return why the table may lack servers (an unreachable cell), None if it may not."""
        return self._state.incomplete

    def age(self) -> float | None:
        """Return seconds since the newest successful listing started, None if none has."""
        synced = self._state.synced_from
        return None if synced is None else max(0.0, self._clock() - synced)

    def __len__(self) -> int:
        return len(self._state.statuses)

    # -- refreshing ------------------------------------------------------------------

    def status_as_of(self, uuid: str, asked_at: float, *, full_since: str | None) -> str | None:
        """Return the status from a listing that started after `asked_at`.

        Concurrent callers share one refresh: whoever waited for the lock while
        another refreshed finds the table already newer than its question.
        """
        with self._lock:
            state = self._state
            if (
                state.synced_from is None
                or state.synced_from < asked_at
                or state.full_since != full_since
            ):
                self._refresh_locked(full_since)
            return self._state.statuses.get(uuid)

    def refresh(self, *, full_since: str | None, check_cells: bool = False) -> None:
        """Bring the table up to date (full or incremental); raise UpstreamError on failure.

        With `check_cells`, first ask Nova's unfiltered listing whether a cell is
        down: then every listing skips its servers silently, and the table is
        marked incomplete until a full listing is read with every cell answering.
        """
        with self._lock:
            self._refresh_locked(full_since, check_cells=check_cells)

    def _refresh_locked(self, full_since: str | None, *, check_cells: bool = False) -> None:
        state, started, started_wall = self._state, self._clock(), self._wall()
        try:
            down = self._down_cell_servers() if check_cells else None
            full = (
                state.full_from is None
                or state.full_since != full_since
                or started - state.full_from >= self._resync_interval
                # The cells answer again: what they hid is read now, not at the next resync.
                or (state.incomplete is not None and down == 0)
            )
            fresh = self._read(state, (started, started_wall), full, full_since)
            self._state = dataclasses.replace(fresh, incomplete=_incomplete(state, full, down))
        except UpstreamError as ex:
            self.failures += 1
            self.last_error = ex.reason
            raise
        self.failures, self.last_error = 0, None

    def _read(
        self,
        state: IndexState,
        began: tuple[float, float],
        full: bool,
        full_since: str | None,
    ) -> IndexState:
        started, started_wall = began
        if full:
            statuses: dict[str, str] = {}
            deleted_seen: dict[str, float] = {}
            since = full_since
        else:
            statuses, deleted_seen = dict(state.statuses), dict(state.deleted_seen)
            since = poll_since(state, started_wall)
        for page in self.nova.list_servers(changes_since=since):
            for server in page:
                # Interned: 100,000 servers share a handful of status strings.
                status = sys.intern(server.listed_status)
                statuses[server.id] = status
                if status == DELETED:
                    deleted_seen.setdefault(server.id, started_wall)
        # Only a listing read to its last page gets here (a failing page raises).
        return IndexState(
            statuses,
            deleted_seen,
            synced_from=started,
            full_from=started if full else state.full_from,
            full_since=full_since if full else state.full_since,
            nova_offset=self._nova_offset(state.nova_offset),
            synced_wall=started_wall,
        )

    def _down_cell_servers(self) -> int | None:
        """Return how many servers Nova lists as UNKNOWN (cell down); None below 2.69."""
        if not lists_unreachable_cells(self.nova.microversion()):
            return None  # below 2.69 even the unfiltered listing omits them
        page = self.nova.unfiltered_page(detail=False)
        return sum(1 for server in page if server.status == UNKNOWN)

    def _nova_offset(self, previous: float | None) -> float | None:
        """Return Nova's clock minus our wall clock, from the Date of the answer just read."""
        nova = self.nova.nova_time()
        return previous if nova is None else nova - self._wall()


def _incomplete(previous: IndexState, full: bool, down: int | None) -> str | None:
    """Return why the table just read may lack servers, None if nothing says so."""
    if down:
        return f"a cell is unreachable: Nova lists {down} server(s) as UNKNOWN and skips them"
    if full and down == 0:
        return None
    return previous.incomplete


def lists_unreachable_cells(microversion: str) -> bool:
    """Return True if listings at this microversion show servers of down cells (2.69+)."""
    major, _, minor = microversion.partition(".")
    return (int(major), int(minor or 0)) >= (2, 69)


def poll_since(state: IndexState, started_wall: float) -> str:
    """Return the changes-since of a poll that begins at `started_wall` after `state`."""
    last = started_wall if state.synced_wall is None else state.synced_wall
    return iso(window_start(last, state.nova_offset))


def window_start(last_listing: float, nova_offset: float | None) -> float:
    """Return, by Nova's clock, where a changes-since listing must start to miss nothing.

    NOTE: changes-since compares with Nova's clock. When this host runs ahead of
    Nova (a negative offset, measured from Nova's Date headers), a window taken
    from our clock alone would miss servers created meanwhile, and the listing
    rule would call them absent. A host behind Nova only widens the window.
    """
    return last_listing + min(0.0, nova_offset or 0.0) - SKEW_MARGIN
