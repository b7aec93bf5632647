"""Plain data of the simulated cloud: servers, statuses, faults, the clock, counters."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections import Counter, deque
from typing import NamedTuple

UTC = dt.UTC

# status -> (vm_state, power_state, task_state) as Nova derives them.
# Power states: 0 NOSTATE, 1 RUNNING, 3 PAUSED, 4 SHUTDOWN, 7 SUSPENDED.
STATUSES: dict[str, tuple[str, int, str | None]] = {
    "ACTIVE": ("active", 1, None),
    "BUILD": ("building", 0, "spawning"),
    "SHUTOFF": ("stopped", 4, None),
    "ERROR": ("error", 0, None),
    "PAUSED": ("paused", 3, None),
    "SUSPENDED": ("suspended", 7, None),
    "RESCUE": ("rescued", 1, None),
    "VERIFY_RESIZE": ("resized", 1, None),
    "REBOOT": ("active", 1, "rebooting"),
    "HARD_REBOOT": ("active", 1, "rebooting_hard"),
    "MIGRATING": ("active", 1, "migrating"),
    "SHELVED": ("shelved", 4, None),
    "SHELVED_OFFLOADED": ("shelved_offloaded", 4, None),
    "SOFT_DELETED": ("soft-delete", 4, None),
    "DELETED": ("deleted", 0, None),
}


@dataclasses.dataclass(slots=True)
class FakeServer:
    """One Nova instance record (a snapshot when handed out by SimulatedCloud)."""

    id: str
    name: str
    project_id: str
    user_id: str
    status: str
    vm_state: str
    task_state: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    deleted_at: dt.datetime | None
    cell: str
    host: str | None
    region: str = "RegionOne"
    power_state: int = 1
    launched_at: dt.datetime | None = None
    flavor: str = "m1.small"
    image_id: str = ""
    #: Where a new server is in its build (shared facts, "servers being built"):
    #: "unscheduled" (a build request: 200 by id even to a reader of another project
    #: with a listing override), "unlisted" (in its cell, never updated yet: missing
    #: from changes-since listings), None (built).
    stage: str | None = None

    @property
    def deleted(self) -> bool:
        """True once the record is (hard) deleted."""
        return self.status == "DELETED"

    def copy(self) -> FakeServer:
        """Return an independent snapshot (fields are immutable values)."""
        new = object.__new__(FakeServer)
        for name in _SERVER_FIELDS:
            object.__setattr__(new, name, getattr(self, name))
        return new

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form (used by the control API)."""
        out: dict[str, object] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            out[field.name] = value.isoformat() if isinstance(value, dt.datetime) else value
        return out


_SERVER_FIELDS = tuple(f.name for f in dataclasses.fields(FakeServer))


@dataclasses.dataclass(slots=True)
class Fault:
    """Misbehaviour injected into one listener (Keystone, or Nova of one region)."""

    down: bool = False
    status: int | None = None
    delay: float = 0.0
    garbage: bool = False
    fail_page: int | None = None
    hide_cell: str | None = None
    retry_after: int = 1
    #: Listings ignore their marker: every page is the first (a proxy replaying it).
    replay_pages: bool = False
    #: Every listing page carries an item that is not a server object.
    bad_item: bool = False

    @property
    def active(self) -> bool:
        """True when any misbehaviour is configured."""
        return self != Fault()


class RequestRecord(NamedTuple):
    """One request as seen by a listener."""

    service: str
    method: str
    path: str
    status: int


class Clock:
    """UTC wall clock with microsecond resolution that never returns the same instant twice."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = dt.datetime.fromtimestamp(0, UTC)

    def now(self) -> dt.datetime:
        """Return a timestamp strictly later than every previous one."""
        with self._lock:
            now = dt.datetime.now(UTC)
            if now <= self._last:
                now = self._last + dt.timedelta(microseconds=1)
            self._last = now
            return now

    def reserve(self, n: int) -> dt.datetime:
        """Reserve ``n`` consecutive microseconds; return the first."""
        with self._lock:
            start = max(dt.datetime.now(UTC), self._last + dt.timedelta(microseconds=1))
            self._last = start + dt.timedelta(microseconds=max(n - 1, 0))
            return start


class Stats:
    """Request counters and a bounded request log."""

    def __init__(self, maxlen: int = 10_000) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.log: deque[RequestRecord] = deque(maxlen=maxlen)

    def count(self, service: str, kind: str, region: str | None) -> None:
        """Count one request of ``kind`` (e.g. "show") on ``service``."""
        keys = [f"{service}.{kind}", f"{service}.total"]
        if region:
            keys += [f"{key}@{region}" for key in keys]
        with self._lock:
            self.counts.update(keys)

    def tally(self, key: str, amount: int, region: str | None) -> None:
        """Add `amount` to a counter that is not a request count (e.g. servers listed)."""
        keys = [key, f"{key}@{region}"] if region else [key]
        with self._lock:
            for name in keys:
                self.counts[name] += amount

    def record(self, record: RequestRecord) -> None:
        """Append one finished request to the log."""
        with self._lock:
            self.log.append(record)

    def snapshot(self) -> tuple[Counter[str], list[RequestRecord]]:
        """Copies of the counters and the log."""
        with self._lock:
            return Counter(self.counts), list(self.log)

    def reset(self) -> None:
        """Forget all counts and log entries."""
        with self._lock:
            self.counts.clear()
            self.log.clear()


def nova_time(value: dt.datetime | None) -> str | None:
    """Nova's ``created``/``updated`` format: seconds and a Z."""
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def nova_usage_time(value: dt.datetime | None) -> str | None:
    """Nova's ``OS-SRV-USG`` format: microseconds, no zone."""
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%S.%f")


def keystone_time(value: dt.datetime) -> str:
    """Keystone's token time format: microseconds and a Z."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
