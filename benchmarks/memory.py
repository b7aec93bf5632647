"""Index memory, measured two ways.

* RSS: each Gunicorn worker's resident set (``/proc/<pid>/status``) while its
  first Nova request is held back (index empty) and again once the index has
  loaded. The growth is what the index really costs the process, allocator
  slack and the parsing of the listing pages included.
* tracemalloc: a ``ServerIndex`` built in this process from fake listing pages;
  the bytes it keeps afterwards are the index's own Python objects, nothing else.
  A full resync builds the new table while the old one is still served, so the
  peak during a second full listing is reported too.
"""

from __future__ import annotations

import gc
import random
import time
import tracemalloc
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from benchmarks.procfs import status_kib
from instanceapi.check.index import ServerIndex
from instanceapi.openstack import Identity, ServerRecord, parse_page

MB = 1_000_000
PAGE = 1000


def settled_rss_mb(pids: list[int], *, timeout: float = 15.0) -> dict[int, float]:
    """Return each process's RSS in MB once it has stopped changing (bounded in time)."""
    deadline = time.monotonic() + timeout
    previous: dict[int, int] = {}
    steady = 0
    while time.monotonic() < deadline and steady < 3:
        current = {pid: status_kib(pid, "VmRSS") for pid in pids}
        steady = steady + 1 if current == previous else 0
        previous = current
        time.sleep(0.25)
    return {pid: kib * 1024 / MB for pid, kib in previous.items()}


def peak_rss_mb(pids: list[int]) -> dict[int, float]:
    """Return each process's peak RSS (VmHWM) so far, in MB."""
    return {pid: status_kib(pid, "VmHWM") * 1024 / MB for pid in pids}


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
