"""The index snapshot store with real files: format, publishing, lock-free readers, corruption.

The prime rule here: a snapshot that is missing, truncated or corrupt must be
"unreadable" (the caller falls back to live lookups), never "not listed".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from instanceapi.check.store.reader import IndexView
from instanceapi.check.store.snapshot import (
    IDS_AT,
    INCLUDES_SOFT_DELETED,
    SUPERSEDED_AT,
    TABLE_AT,
    Snapshot,
    SnapshotUnreadable,
)
from instanceapi.check.store.writer import publish_changes, publish_full


def new_id() -> str:
    """Return a fresh canonical UUID."""
    return str(uuid.uuid4())


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """Return where the target's snapshot lives."""
    return tmp_path / "target.snap"


def test_lookup_answers_listed_statuses_and_none_for_unlisted(path: Path) -> None:
    listed = {new_id(): status for status in ("ACTIVE", "SHUTOFF", "SOFT_DELETED", "BUILD")}
    odd = new_id()
    publish_full(path, [*listed.items(), (odd, "NOT-A-NOVA-STATUS")], listed_from=5.0, flags=0)
    view = IndexView(path)
    assert {uuid: view.lookup(uuid) for uuid in listed} == listed
    assert view.lookup(odd) == "UNKNOWN"  # never evidence either way
    assert view.lookup(new_id()) is None


def test_an_empty_listing_is_a_readable_snapshot_that_lists_nothing(path: Path) -> None:
    header = publish_full(path, [], listed_from=1.0, flags=INCLUDES_SOFT_DELETED)
    assert header.count == 0
    assert IndexView(path).lookup(new_id()) is None


@pytest.mark.parametrize("order", [1, -1])
def test_a_match_straddling_two_ids_of_a_bucket_is_not_a_hit(path: Path, order: int) -> None:
    # When b precedes c in their bucket, b's last 8 bytes and c's first 8 spell `a`.
    b = "aaaa1111-1111-1111-aaaa-000000000000"
    c = "aaaabbbb-bbbb-bbbb-cccc-cccccccccccc"
    a = "aaaa0000-0000-0000-aaaa-bbbbbbbbbbbb"
    publish_full(path, [(b, "ACTIVE"), (c, "ERROR")][::order], listed_from=1.0, flags=0)
    view = IndexView(path)
    assert (view.lookup(b), view.lookup(c), view.lookup(a)) == ("ACTIVE", "ERROR", None)
    publish_changes(path, {a: "PAUSED"}, listed_from=2.0)
    assert view.lookup(a) == "PAUSED"
    publish_full(
        path, [(a, "PAUSED"), (b, "ACTIVE"), (c, "ERROR")][::order], listed_from=3.0, flags=0
    )
    assert (view.lookup(b), view.lookup(c), view.lookup(a)) == ("ACTIVE", "ERROR", "PAUSED")


def test_an_id_listed_twice_keeps_its_last_status(path: Path) -> None:
    twice = new_id()
    publish_full(
        path, [(twice, "BUILD"), (new_id(), "ACTIVE"), (twice, "ACTIVE")], listed_from=1.0, flags=0
    )
    assert IndexView(path).lookup(twice) == "ACTIVE"
    publish_changes(path, {new_id(): "ACTIVE"}, listed_from=2.0)
    assert IndexView(path).lookup(twice) == "ACTIVE"


def test_changes_upsert_keep_the_rest_and_record_deletions(path: Path) -> None:
    kept, changed, gone = new_id(), new_id(), new_id()
    publish_full(
        path, [(kept, "ACTIVE"), (changed, "BUILD"), (gone, "ACTIVE")], listed_from=1.0, flags=1
    )
    added = new_id()
    header = publish_changes(
        path, {changed: "ACTIVE", gone: "DELETED", added: "BUILD"}, listed_from=7.0
    )
    assert (header.count, header.generation, header.listed_from, header.flags) == (4, 2, 7.0, 1)
    view = IndexView(path)
    assert [view.lookup(u) for u in (kept, changed, gone, added)] == [
        "ACTIVE",
        "ACTIVE",
        "DELETED",
        "BUILD",
    ]
    assert (view.deleted_at(gone), view.deleted_at(kept)) == (7.0, None)
    publish_changes(path, {gone: "DELETED"}, listed_from=9.0, flags=0)
    assert view.deleted_at(gone) == 7.0  # first report kept
    assert view.header().flags == 0


def test_a_deletion_in_a_full_listing_is_recorded_at_its_start(path: Path) -> None:
    gone = new_id()
    publish_full(path, [(gone, "DELETED")], listed_from=3.5, flags=1)
    assert IndexView(path).deleted_at(gone) == 3.5


def test_a_held_view_remaps_once_the_old_file_is_superseded(path: Path) -> None:
    first = new_id()
    publish_full(path, [(first, "ACTIVE")], listed_from=1.0, flags=0)
    view = IndexView(path)
    old = view.current()
    assert view.lookup(first) == "ACTIVE"
    second = new_id()
    publish_changes(path, {second: "ACTIVE"}, listed_from=2.0)
    assert old.superseded
    assert view.lookup(second) == "ACTIVE"
    assert view.current() is not old
    # A thread still holding the old mapping keeps reading valid (older) pages.
    assert old.code(uuid.UUID(second).bytes) is None
    assert old.code(uuid.UUID(first).bytes) is not None


def test_changes_without_a_current_snapshot_ask_for_a_full_listing(path: Path) -> None:
    with pytest.raises(SnapshotUnreadable):
        publish_changes(path, {new_id(): "ACTIVE"}, listed_from=1.0)
    assert not path.exists()


def test_a_bad_id_changes_nothing_and_leaves_no_file_behind(path: Path) -> None:
    listed = new_id()
    publish_full(path, [(listed, "ACTIVE")], listed_from=1.0, flags=0)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="not-a-uuid"):
        publish_full(
            path, [(new_id(), "ACTIVE"), ("not-a-uuid", "ACTIVE")], listed_from=2.0, flags=0
        )
    with pytest.raises(ValueError):
        publish_changes(path, {"0123": "ACTIVE"}, listed_from=2.0)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


# -- never a false absence from a damaged file ---------------------------------------


def _truncate(to: int) -> tuple[str, object]:
    return f"truncated to {to}", lambda raw: raw[:to] if to >= 0 else raw[: len(raw) + to]


def _flip(at: int) -> tuple[str, object]:
    def flip(raw: bytearray) -> bytearray:
        raw[at if at >= 0 else len(raw) + at] ^= 0x40
        return raw

    return f"byte {at} flipped", flip


DAMAGE = dict(
    [
        _truncate(0),
        _truncate(8),
        _truncate(TABLE_AT),
        _truncate(IDS_AT - 1),
        _truncate(IDS_AT + 16 * 3),
        _truncate(-1),
        ("one byte appended", lambda raw: raw + b"\0"),
        ("zero-filled", lambda raw: bytearray(len(raw))),
        _flip(0),  # magic
        _flip(13),  # crc
        _flip(16),  # count
        _flip(24),  # generation
        _flip(32),  # listed_from
        _flip(40),  # flags
        _flip(48),  # deleted count
        _flip(TABLE_AT + 4 * 0xAAAA),  # table
        _flip(IDS_AT + 5),  # an id
        _flip(-17),  # a status code
        _flip(-1),  # the deleted section
    ]
)


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_snapshot_is_unreadable_never_not_listed(path: Path, damage: str) -> None:
    listed = [f"aaaa{n:04x}-0000-4000-8000-000000000000" for n in range(8)]
    publish_full(path, [(u, "ACTIVE") for u in listed[:-1]], listed_from=1.0, flags=0)
    publish_changes(path, {listed[-1]: "DELETED"}, listed_from=2.0)
    raw = bytearray(path.read_bytes())
    path.write_bytes(DAMAGE[damage](raw))  # type: ignore[operator]
    view = IndexView(path)
    for canonical in [*listed, new_id()]:
        with pytest.raises(SnapshotUnreadable):
            view.lookup(canonical)


@pytest.mark.parametrize("at", [9, 10, 11])
def test_damage_in_the_header_padding_changes_no_answer(path: Path, at: int) -> None:
    # Found by the property test: the only bytes outside the checksum besides
    # `superseded` are padding that nothing reads.
    listed = new_id()
    publish_full(path, [(listed, "PAUSED")], listed_from=1.0, flags=0)
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0xFF
    path.write_bytes(raw)
    view = IndexView(path)
    assert (view.lookup(listed), view.lookup(new_id())) == ("PAUSED", None)


def test_a_missing_snapshot_is_unreadable(path: Path) -> None:
    with pytest.raises(SnapshotUnreadable):
        IndexView(path).lookup(new_id())


def test_a_superseded_file_replaced_by_a_damaged_one_is_unreadable(path: Path) -> None:
    listed = new_id()
    publish_full(path, [(listed, "ACTIVE")], listed_from=1.0, flags=0)
    view = IndexView(path)
    assert view.lookup(listed) == "ACTIVE"
    publish_full(path, [(listed, "ACTIVE")], listed_from=2.0, flags=0)
    with open(path, "r+b") as f:
        f.truncate(IDS_AT + 3)
    with pytest.raises(SnapshotUnreadable):
        view.lookup(listed)
    with pytest.raises(SnapshotUnreadable):  # and again, from the remembered bad file
        view.lookup(listed)
    publish_full(path, [(listed, "ACTIVE")], listed_from=3.0, flags=0)  # a good one again
    assert view.lookup(listed) == "ACTIVE"


def test_the_superseded_byte_is_outside_the_checksum(path: Path) -> None:
    listed = new_id()
    publish_full(path, [(listed, "ACTIVE")], listed_from=1.0, flags=0)
    with open(path, "r+b") as f:
        os.pwrite(f.fileno(), b"\1", SUPERSEDED_AT)
    snapshot = Snapshot.open(path)
    assert snapshot.superseded
    assert IndexView(path).lookup(listed) == "ACTIVE"  # older but complete: still used


# -- concurrency ------------------------------------------------------------------------


def test_reader_threads_never_miss_a_listed_id_while_the_writer_publishes(path: Path) -> None:
    stable = [new_id() for _ in range(200)]
    never = [new_id() for _ in range(50)]
    publish_full(path, [(u, "ACTIVE") for u in stable], listed_from=1.0, flags=0)
    view = IndexView(path)
    stop = threading.Event()
    wrong: list[str] = []
    lookups = [0] * 4

    def read(n: int) -> None:
        while not stop.is_set():
            wrong.extend(u for u in stable if view.lookup(u) != "ACTIVE")
            wrong.extend(u for u in never if view.lookup(u) is not None)
            lookups[n] += len(stable) + len(never)

    readers = [threading.Thread(target=read, args=(n,)) for n in range(4)]
    for thread in readers:
        thread.start()
    try:
        for generation in range(40):
            churn = {new_id(): "BUILD" for _ in range(100)}
            if generation % 10 == 9:
                publish_full(
                    path,
                    [*churn.items(), *((u, "ACTIVE") for u in stable)],
                    listed_from=float(generation),
                    flags=0,
                )
            else:
                publish_changes(path, churn, listed_from=float(generation))
    finally:
        stop.set()
        for thread in readers:
            thread.join(timeout=30)
    assert wrong == []
    assert all(count > 0 for count in lookups)
    assert view.header().generation == 41


READER = """
import json, sys
from pathlib import Path
from instanceapi.check.store.reader import IndexView
path, stop = Path(sys.argv[1]), Path(sys.argv[2])
stable, never = sys.argv[3].split(","), sys.argv[4].split(",")
view = IndexView(path)
wrong = rounds = 0
print("reading", flush=True)
while True:
    last = stop.exists()
    wrong += sum(view.lookup(u) != "ACTIVE" for u in stable)
    wrong += sum(view.lookup(u) is not None for u in never)
    rounds += 1
    if last:
        break
print(json.dumps({"wrong": wrong, "rounds": rounds, "last": view.header().generation}))
"""


def test_a_reader_in_another_process_follows_each_publish_without_a_wrong_answer(
    path: Path,
) -> None:
    stable = [new_id() for _ in range(100)]
    never = [new_id() for _ in range(20)]
    publish_full(path, [(u, "ACTIVE") for u in stable], listed_from=1.0, flags=0)
    stop = path.with_name("stop")
    argv = [sys.executable, "-c", READER, str(path), str(stop), ",".join(stable), ",".join(never)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as reader:
        assert reader.stdout is not None
        assert reader.stdout.readline() == "reading\n"
        for generation in range(2, 32):
            publish_changes(
                path, {new_id(): "BUILD" for _ in range(50)}, listed_from=float(generation)
            )
        stop.touch()
        out, _ = reader.communicate(timeout=60)
    result = json.loads(out)
    assert result["wrong"] == 0
    assert result["rounds"] >= 1
    assert result["last"] == 31  # it remapped to the newest file
