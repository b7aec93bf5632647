"""Index memory, measured two ways.

* ``/proc``: the memory of every process of the service (the Gunicorn master,
  its workers and any other child, such as a refresher) while the first Nova
  request is held back (index empty) and again once the index has loaded: RSS,
  PSS and USS per process (``benchmarks.procfs``), and the service's PSS summed
  over all of them. The growth is what the index really costs, allocator slack
  and the parsing of the listing pages included; a shared mapping counts once.
* tracemalloc: a ``ServerIndex`` built in this process from fake listing pages;
  the bytes it keeps afterwards are the index's own Python objects, nothing else.
  A full resync builds the new table while the old one is still served, so the
  peak during a second full listing is reported too.
"""

from __future__ import annotations

import gc
import random
import re
import time
import tracemalloc
import uuid as uuidlib
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.procfs import NO_MEMORY, Memory, directory_kib, service_memory, status_kib
from instanceapi.check.index import ServerIndex
from instanceapi.openstack import Identity, ServerRecord, parse_page

MB = 1_000_000
PAGE = 1000
_BOOTED = re.compile(r"Booting worker with pid: (\d+)")


def booted_workers(log: str) -> set[int]:
    """Return the pid of every worker Gunicorn's log says it booted."""
    return {int(pid) for pid in _BOOTED.findall(log)}


@dataclass(frozen=True)
class ServiceMemory:
    """The memory of every process of one service at one moment, in KiB, and their roles."""

    master: int
    processes: dict[int, Memory]
    workers: frozenset[int]
    refreshers: frozenset[int] = frozenset()  # any other process below the master: "other"
    rss_peak: dict[int, int] = field(default_factory=dict)  # VmHWM, when read
    runtime_kib: int = 0  # the files of the runtime directory (on tmpfs: RAM)

    def role(self, pid: int) -> str:
        """Return "master", "worker", "refresher" or "other"."""
        if pid == self.master:
            return "master"
        if pid in self.workers:
            return "worker"
        return "refresher" if pid in self.refreshers else "other"

    @property
    def total(self) -> Memory:
        """Return the sum over the whole service (its PSS is what the service uses)."""
        out = NO_MEMORY
        for figures in self.processes.values():
            out = out + figures
        return out

    @property
    def service_kib(self) -> int:
        """Return the service's memory: its processes' PSS, tmpfs pages they map left out,
        plus every file of its runtime directory on tmpfs (mapped or not, once)."""
        total = self.total
        return total.pss - total.pss_shmem + self.runtime_kib

    def of(self, role: str) -> dict[int, Memory]:
        """Return the processes of one role."""
        return {pid: m for pid, m in self.processes.items() if self.role(pid) == role}


def read_service(
    master: int,
    workers: set[int],
    refreshers: AbstractSet[int] = frozenset(),
    *,
    peak: bool = False,
    runtime: Path | None = None,
) -> ServiceMemory:
    """Read the memory of the master and every process below it (and the size of the
    runtime directory, if given)."""
    processes = service_memory(master)
    peaks = {}
    if peak:
        for pid in processes:
            try:
                peaks[pid] = status_kib(pid, "VmHWM")
            except (FileNotFoundError, ProcessLookupError):
                continue
    found = processes.keys()
    return ServiceMemory(
        master,
        processes,
        frozenset(workers & found),
        frozenset(refreshers & found),
        peaks,
        directory_kib(runtime) if runtime is not None else 0,
    )


def settled_service(
    master: int,
    workers: set[int],
    refreshers: AbstractSet[int] = frozenset(),
    *,
    timeout: float = 15.0,
    runtime: Path | None = None,
) -> ServiceMemory:
    """Read the service's memory once every process's RSS has stopped changing (bounded)."""
    deadline = time.monotonic() + timeout
    previous: dict[int, int] = {}
    steady = 0
    reading = read_service(master, workers, refreshers, runtime=runtime)
    while time.monotonic() < deadline and steady < 3:
        reading = read_service(master, workers, refreshers, runtime=runtime)
        current = {pid: m.rss for pid, m in reading.processes.items()}
        steady = steady + 1 if current == previous else 0
        previous = current
        time.sleep(0.25)
    return reading


class FakeListing:
    """Just enough of the ``Compute`` protocol for a ServerIndex: pages of detail records.

    The pages' JSON is built up front, outside tracemalloc (which would slow its
    building tenfold); each listing parses it into records as NovaRegion does
    (lower-casing every id), so what the index retains is allocated under
    tracemalloc either way.
    """

    name = cloud = "bench"
    region = None

    def __init__(self, servers: int, *, seed: int = 0) -> None:
        rng = random.Random(seed)  # noqa: S311 - ids for a benchmark
        ids = [str(uuidlib.UUID(int=rng.getrandbits(128), version=4)) for _ in range(servers)]
        self.pages = [
            [{"id": i, "status": "ACTIVE", "tenant_id": "0" * 32} for i in ids[at : at + PAGE]]
            for at in range(0, servers, PAGE)
        ]

    def list_servers(
        self, *, changes_since: str | None = None, page_limit: int = PAGE, max_pages: Any = None
    ) -> Iterator[list[ServerRecord]]:
        """Yield the pages (every listing lists every server)."""
        for page in self.pages:
            yield parse_page(page)

    def show(self, uuid: str) -> ServerRecord | None:
        """Never used by the index."""
        return None

    def unfiltered_page(self, *, detail: bool) -> list[ServerRecord]:
        """No cell is down here."""
        return []

    def identity(self) -> Identity:
        """Never used by the index."""
        return Identity("bench", frozenset())

    def nova_time(self) -> float | None:
        return None

    def microversion(self) -> str:
        """Never used by the index."""
        return "2.69"


@dataclass(frozen=True)
class TracedIndex:
    """Bytes a ServerIndex of `servers` keeps, and the peak during a second full listing."""

    servers: int
    kept_mb: float
    resync_peak_mb: float


def traced_index(servers: int) -> TracedIndex:
    """Build a ServerIndex of `servers` under tracemalloc; measure what it keeps."""
    listing = FakeListing(servers)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        index = ServerIndex(listing, resync_interval=0.0)
        index.refresh(full_since=None)
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.reset_peak()
        index.refresh(full_since=None)  # resync_interval=0: a second full listing
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    if len(index) != servers:
        raise RuntimeError(f"the index holds {len(index)} servers, not {servers}")
    return TracedIndex(servers, kept / MB, peak / MB)
