"""The paced resync's memory of what it saw, and the writer's removal of rows no listing shows."""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path

from instanceapi.check.refresher.walk import SeenIds
from instanceapi.check.store.reader import IndexView
from instanceapi.check.store.snapshot import key_of
from instanceapi.check.store.writer import publish_changes, publish_full


def ids(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)]


def test_every_id_added_is_seen_and_few_others_are():
    seen_ids, other_ids = ids(20_000, 1), ids(20_000, 2)
    seen = SeenIds(len(seen_ids))
    for server_id in seen_ids:
        seen.add(key_of(server_id))
    assert all(key_of(s) in seen for s in seen_ids)  # never a row removed that was seen
    kept = sum(key_of(s) in seen for s in other_ids)
    assert kept < 0.05 * len(other_ids)  # a false "seen" only keeps a row a while longer


def test_the_filter_costs_about_a_byte_per_server():
    assert 1_000_000 <= SeenIds(1_000_000).size <= 1_300_000
    assert SeenIds(0).size <= 8193  # a floor, for clouds that grow during the walk


def test_removed_rows_leave_the_snapshot_and_its_deleted_section(tmp_path: Path):
    path = tmp_path / "t.snap"
    alive, archived, deleted = ids(50, 3), ids(5, 4), ids(5, 5)
    records = [(i, "ACTIVE") for i in alive + archived] + [(i, "DELETED") for i in deleted]
    publish_full(path, records, listed_from=time.monotonic(), flags=0)
    view = IndexView(path)
    assert all(view.deleted_at(i) is not None for i in deleted)

    gone = {key_of(i) for i in archived + deleted[:2]}
    born = ids(1, 6)[0]
    publish_changes(path, {born: "BUILD"}, listed_from=time.monotonic(), removed=gone)

    assert all(view.lookup(i) is None for i in archived + deleted[:2])
    assert all(view.deleted_at(i) is None for i in deleted[:2])
    assert all(view.lookup(i) == "ACTIVE" for i in alive)
    assert all(view.lookup(i) == "DELETED" and view.deleted_at(i) for i in deleted[2:])
    assert view.lookup(born) == "BUILD"
    assert view.header().count == len(alive) + 3 + 1


def test_a_row_both_removed_and_changed_stays(tmp_path: Path):
    path = tmp_path / "t.snap"
    server = ids(1, 7)[0]
    publish_full(path, [(server, "ACTIVE")], listed_from=time.monotonic(), flags=0)
    publish_changes(
        path, {server: "SHUTOFF"}, listed_from=time.monotonic(), removed={key_of(server)}
    )
    assert IndexView(path).lookup(server) == "SHUTOFF"
