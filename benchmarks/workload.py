"""The UUIDs a run asks about: 90% existing instances, 10% absent ones.

Half of the absent ones are instances deleted before the service starts (Nova
answers 404 for them, the index never listed them), the other half UUIDs that
never existed. Everything is drawn from a seeded generator, so a run is repeatable.
"""

from __future__ import annotations

import random
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass

ABSENT_FRACTION = 0.10
BATCH = 1000


@dataclass(frozen=True)
class Workload:
    """The sweep list as (uuid, expected status) pairs in check order, and a spare UUID."""

    pairs: list[tuple[str, int]]
    probe: str  # an existing instance outside the list, to poll the index with

    @property
    def existing(self) -> list[str]:
        """Return the UUIDs expected to exist."""
        return [u for u, code in self.pairs if code == 200]

    @property
    def absent(self) -> list[str]:
        """Return the UUIDs expected to be absent."""
        return [u for u, code in self.pairs if code == 404]


def make_workload(
    populated: list[str], size: int, delete: Callable[[str], None], *, seed: int = 0
) -> Workload:
    """Pick `size` UUIDs from `populated` servers; delete some of those not picked.

    `delete` removes a server from the cloud (before the service starts).
    """
    rng = random.Random(seed)  # noqa: S311 - a benchmark's sample
    absent_count = max(2, round(size * ABSENT_FRACTION))
    existing_count = size - absent_count
    if len(populated) < existing_count + absent_count // 2 + 1:
        raise ValueError(f"{len(populated)} servers are too few for a list of {size}")
    chosen = rng.sample(populated, existing_count + absent_count // 2 + 1)
    existing, doomed, probe = (
        chosen[:existing_count],
        chosen[existing_count:-1],
        chosen[-1],
    )
    for server_id in doomed:
        delete(server_id)
    never = [_uuid4(rng) for _ in range(absent_count - len(doomed))]
    pairs = [(u, 200) for u in existing] + [(u, 404) for u in doomed + never]
    rng.shuffle(pairs)
    return Workload(pairs, probe)


def _uuid4(rng: random.Random) -> str:
    return str(uuidlib.UUID(int=rng.getrandbits(128), version=4))


def bulk_batches(workload: Workload, *, batch: int = BATCH) -> tuple[list[list[str]], int]:
    """Return batches of `batch` UUIDs, each with the same absent share, and its absent count.

    Batches take the list's UUIDs in turn (repeating them if the list is short),
    so every batch has exactly the same number of absent UUIDs.
    """
    existing, absent = workload.existing, workload.absent
    absent_per_batch = round(batch * ABSENT_FRACTION)
    existing_per_batch = batch - absent_per_batch
    count = max(1, len(workload.pairs) // batch)
    batches = []
    for number in range(count):
        items = _cyclic(existing, number * existing_per_batch, existing_per_batch)
        items += _cyclic(absent, number * absent_per_batch, absent_per_batch)
        random.Random(number).shuffle(items)  # noqa: S311
        batches.append(items)
    return batches, absent_per_batch


def _cyclic(items: list[str], start: int, count: int) -> list[str]:
    return [items[(start + i) % len(items)] for i in range(count)]
