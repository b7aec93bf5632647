"""A target's all-project server listing, held in memory and brought up to date.

A full sync reads every page; after that, ``changes-since`` listings add new
and changed servers and mark deleted ones. Nova does not keep deleted records
forever, so a full sync is repeated every ``resync_interval``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from instanceapi.openstack import Compute

#: Subtracted from our clock before asking changes-since: tolerates clock skew
#: between this host and Nova's database, at the cost of re-reading a minute.
SKEW_MARGIN = 60.0
#: changes-since the epoch also returns soft-deleted (restorable) servers, which
#: the default listing leaves out; the listing rule must not miss them.
EVERYTHING = "1970-01-01T00:00:00Z"


def iso(timestamp: float) -> str:
    """Return a UTC ISO 8601 timestamp as Nova's changes-since expects it."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ServerMirror:
    """Statuses of every server of one target, by id ("DELETED" for seen deletions)."""

    def __init__(
        self,
        target: Compute,
        *,
        full_since: str | None = EVERYTHING,
        resync_interval: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._target = target
        self._full_since = full_since
        self._resync_interval = resync_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._statuses: dict[str, str] = {}
        self._synced_from: float | None = None
        self._full_at: float | None = None

    def status_as_of(self, uuid: str, asked_at: float) -> str | None:
        """Return the server's status in a listing read after `asked_at`, None if unlisted.

        Concurrent callers share one refresh: whoever waited for the lock while
        another refreshed finds the mirror already newer than its question.
        """
        with self._lock:
            if self._synced_from is None or self._synced_from < asked_at:
                self._refresh()
            return self._statuses.get(uuid)

    def _refresh(self) -> None:
        started = self._clock()
        full = self._full_at is None or started - self._full_at >= self._resync_interval
        since = self._full_since if full else iso(self._synced_from - SKEW_MARGIN)  # type: ignore[operator]
        fresh: dict[str, str] = {} if full else dict(self._statuses)
        for page in self._target.list_servers(changes_since=since):
            for server in page:
                fresh[str(server["id"]).lower()] = str(server.get("status", "UNKNOWN"))
        # Only a listing read to the end replaces what we had (pages raise otherwise).
        self._statuses = fresh
        self._synced_from = started
        if full:
            self._full_at = started
