"""One target's servers, held in memory: the fast path, and the listing rule's evidence.

A full sync reads every page of the all-project listing; after that,
``changes-since`` listings add new and changed servers and mark deleted ones.
Nova does not keep deleted records forever, so a full sync is repeated every
``resync_interval``. Readers never wait: each refresh builds a new table and
swaps it in whole, and a refresh that fails leaves the last good table.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from instanceapi.openstack import Compute, UpstreamError

#: Subtracted from our clock before asking changes-since: tolerates clock skew
#: between this host and Nova's database, at the cost of re-reading a minute.
SKEW_MARGIN = 60.0
#: changes-since the epoch also returns soft-deleted (restorable) servers, which
#: the default listing leaves out; the listing rule must not miss them.
EVERYTHING = "1970-01-01T00:00:00Z"
DELETED = "DELETED"
UNKNOWN = "UNKNOWN"


def iso(timestamp: float) -> str:
    """Return a UTC ISO 8601 timestamp as Nova's changes-since expects it."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class IndexState:
    """What readers see: a status per server id, and deletions seen since the last full sync."""

    statuses: dict[str, str]
    deleted_seen: dict[str, float]
    synced_from: float | None = None  # our clock when the newest listing started
    full_from: float | None = None
    full_since: str | None = None  # the changes-since of the last full sync
    #: Nova's clock minus ours, measured as the newest listing ended (None: unknown).
    nova_offset: float | None = None


class ServerIndex:
    """Statuses of every server of one target, by lower-case id."""

    def __init__(
        self,
        target: Compute,
        *,
        resync_interval: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.target = target
        self._resync_interval = resync_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._state = IndexState({}, {})
        self.failures = 0
        self.last_error: str | None = None

    # -- reading (never blocks) --------------------------------------------------

    def peek(self, uuid: str) -> str | None:
        """Return the server's status in the current table, None if it is not listed."""
        return self._state.statuses.get(uuid)

    def deleted_at(self, uuid: str) -> float | None:
        """Return when a changes-since listing reported this server DELETED, if it did."""
        return self._state.deleted_seen.get(uuid)

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

    def refresh(self, *, full_since: str | None) -> None:
        """Bring the table up to date (full or incremental); raise UpstreamError on failure."""
        with self._lock:
            self._refresh_locked(full_since)

    def _refresh_locked(self, full_since: str | None) -> None:
        state, started = self._state, self._clock()
        full = (
            state.full_from is None
            or state.full_since != full_since
            or started - state.full_from >= self._resync_interval
        )
        try:
            self._state = self._read(state, started, full, full_since)
        except UpstreamError as ex:
            self.failures += 1
            self.last_error = ex.reason
            raise
        self.failures, self.last_error = 0, None

    def _read(
        self, state: IndexState, started: float, full: bool, full_since: str | None
    ) -> IndexState:
        if full:
            statuses: dict[str, str] = {}
            deleted_seen: dict[str, float] = {}
            since = full_since
        else:
            statuses, deleted_seen = dict(state.statuses), dict(state.deleted_seen)
            since = iso(window_start(state.synced_from or started, state.nova_offset))
        for page in self.target.list_servers(changes_since=since):
            for server in page:
                uuid = str(server["id"]).lower()
                # Interned: 100,000 servers share a handful of status strings.
                status = sys.intern(str(server.get("status") or UNKNOWN))
                statuses[uuid] = status
                if status == DELETED:
                    deleted_seen.setdefault(uuid, started)
        # Only a listing read to its last page gets here (a failing page raises).
        return IndexState(
            statuses,
            deleted_seen,
            started,
            started if full else state.full_from,
            full_since if full else state.full_since,
            self._nova_offset(state.nova_offset),
        )

    def _nova_offset(self, previous: float | None) -> float | None:
        """Return Nova's clock minus ours, from the Date of the answer just read."""
        nova = self.target.nova_time()
        return previous if nova is None else nova - self._clock()


def window_start(last_listing: float, nova_offset: float | None) -> float:
    """Return, by Nova's clock, where a changes-since listing must start to miss nothing.

    NOTE: changes-since compares with Nova's clock. When this host runs ahead of
    Nova (a negative offset, measured from Nova's Date headers), a window taken
    from our clock alone would miss servers created meanwhile, and the listing
    rule would call them absent. A host behind Nova only widens the window.
    """
    return last_listing + min(0.0, nova_offset or 0.0) - SKEW_MARGIN
