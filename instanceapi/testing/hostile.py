"""What a hostile client of the service sends, and what it costs upstream.

Shared by the security tests and ``benchmarks.amplification``, so the figures
the benchmark prints are counted the way the tests assert them.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterable

from instanceapi.testing.cloud import SimulatedCloud
from instanceapi.uuids import byte_swapped


def uuids_with_v4_twins(count: int, *, twin_v4: bool = True) -> list[str]:
    """Return random uuid4s whose byte-swapped twins are (or are not) version-4 UUIDs too."""
    found: list[str] = []
    while len(found) < count:
        candidate = str(uuidlib.uuid4())
        if (uuidlib.UUID(byte_swapped(candidate)).version == 4) is twin_v4:
            found.append(candidate)
    return found


def nova_gets(cloud: SimulatedCloud, uuids: Iterable[str]) -> int:
    """Count the GET /servers/{id} the cloud received for these UUIDs or their twins."""
    wanted = {u for x in uuids for u in (x, byte_swapped(x))}
    return sum(
        1
        for r in cloud.requests
        if r.method == "GET" and r.path.split("?")[0].rsplit("/", 1)[-1] in wanted
    )
