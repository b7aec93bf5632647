"""Publish snapshots (the refresher only): write a new file, rename it, flag the old one.

Readers never wait: a published file is never written again except its
``superseded`` byte, set only after the new file is in place, so a reader that
sees it reopens the path and finds the complete new file.
"""

from __future__ import annotations

import mmap
import os
import tempfile
import zlib
from array import array
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path

from instanceapi.check.store.snapshot import (
    BUCKETS,
    CODES,
    CRC_FROM,
    DELETED,
    IDS_AT,
    SUPERSEDED_AT,
    TABLE,
    TABLE_AT,
    Header,
    Snapshot,
    SnapshotUnreadable,
    code_of,
    key_of,
)

DELETED_CODE = CODES["DELETED"]


def publish_full(
    path: Path, records: Iterable[tuple[str, str]], *, listed_from: float, flags: int
) -> Header:
    """Publish every (canonical id, status) of a complete listing, consumed as it streams.

    No object is kept per server: ids go to one bytearray in arrival order and a
    counting sort places them in their bucket. A listed id appearing twice keeps
    its last status (placed first in its bucket, where lookups find it first).
    """
    listing = Listing()
    listing.add(records, seen_at=listed_from)
    return publish_listing(path, listing, listed_from=listed_from, flags=flags)


class Listing:
    """A complete listing being collected, possibly over a long time (the paced resync).

    Later records of an id override earlier ones, so a listing followed by the
    changes-since records read after it publishes the newest status of each.
    """

    def __init__(self) -> None:
        self.ids, self.codes = bytearray(), bytearray()
        self.deleted: dict[bytes, float] = {}

    def add(self, records: Iterable[tuple[str, str]], *, seen_at: float) -> None:
        """Append (canonical id, status) records; a DELETED one is dated `seen_at`."""
        ids, codes, deleted = self.ids, self.codes, self.deleted
        for server_id, status in records:
            key = key_of(server_id)
            code = code_of(status)
            ids += key
            codes.append(code)
            if code == DELETED_CODE:
                deleted.setdefault(key, seen_at)

    def __len__(self) -> int:
        return len(self.codes)


def publish_listing(path: Path, listing: Listing, *, listed_from: float, flags: int) -> Header:
    """Publish a collected complete listing as the new snapshot (replacing the current one)."""
    ids, codes, deleted = listing.ids, listing.codes, listing.deleted
    starts = _bucket_starts(ids)
    table = TABLE.pack(*starts)

    def fill(out: mmap.mmap, header: Header) -> None:
        _place(out, ids, codes, starts)
        out[TABLE_AT:IDS_AT] = table
        _put_deleted(out, header, deleted)

    header = Header(len(codes), _generation_after(path), listed_from, flags, len(deleted))
    _write(path, header, fill)
    return header


def publish_changes(
    path: Path,
    changes: Mapping[str, str],
    *,
    listed_from: float,
    flags: int | None = None,
    removed: Collection[bytes] = (),
) -> Header:
    """Publish the current snapshot plus `changes` (upserts by canonical id), minus `removed`.

    `removed` are ids (16-byte keys) to drop, unless `changes` has them: the
    paced resync's rows that no listing shows any more. Unchanged bucket runs
    are copied as whole slices; only changed buckets are rebuilt. Raises
    SnapshotUnreadable when there is no readable current snapshot: the caller
    then publishes a full listing.
    """
    current = Snapshot.open(path)
    old = current.header
    deleted = _read_deleted(current)
    by_bucket: dict[int, dict[bytes, int]] = {}
    for server_id, status in changes.items():
        key, code = key_of(server_id), code_of(status)
        by_bucket.setdefault(key[0] << 8 | key[1], {})[key] = code
        if code == DELETED_CODE:
            deleted.setdefault(key, listed_from)
    gone = {key for key in removed if key not in by_bucket.get(key[0] << 8 | key[1], {})}
    for key in gone:
        by_bucket.setdefault(key[0] << 8 | key[1], {})
        deleted.pop(key, None)
    old_table = current.bucket_bounds()
    merged = {
        number: _merge(current, old_table, number, new, gone) for number, new in by_bucket.items()
    }
    new_table = _shifted(old_table, merged)

    def fill(out: mmap.mmap, header: Header) -> None:
        _splice(out, current, (old_table, new_table), merged, IDS_AT + 16 * header.count)
        out[TABLE_AT:IDS_AT] = TABLE.pack(*new_table)
        _put_deleted(out, header, deleted)

    flags = old.flags if flags is None else flags
    header = Header(new_table[BUCKETS], old.generation + 1, listed_from, flags, len(deleted))
    _write(path, header, fill)
    return header


def _bucket_starts(ids: bytearray) -> array[int]:
    """Return the first record of each bucket (and the count last), by counting."""
    starts = array("I", bytes(4 * (BUCKETS + 1)))  # starts[b + 1] counts bucket b first
    for at in range(0, len(ids), 16):
        starts[(ids[at] << 8 | ids[at + 1]) + 1] += 1
    for number in range(BUCKETS):
        starts[number + 1] += starts[number]
    return starts


def _place(out: mmap.mmap, ids: bytearray, codes: bytearray, starts: array[int]) -> None:
    """Write each record into its bucket, latest arrival first (consumes `starts`)."""
    status_at = IDS_AT + len(ids)
    for i in range(len(codes) - 1, -1, -1):
        at = 16 * i
        number = ids[at] << 8 | ids[at + 1]
        to = starts[number]
        starts[number] = to + 1
        out[IDS_AT + 16 * to : IDS_AT + 16 * to + 16] = ids[at : at + 16]
        out[status_at + to] = codes[i]


def _splice(
    out: mmap.mmap,
    current: Snapshot,
    tables: tuple[tuple[int, ...], list[int]],
    merged: dict[int, dict[bytes, int]],
    status_at: int,
) -> None:
    """Write the new records: unchanged runs copied from `current`, changed buckets rebuilt."""
    old_table, new_table = tables
    copied = 0  # first bucket not yet written
    for number in sorted(merged):
        lo, hi = old_table[copied], old_table[number]
        _copy_run(out, current, status_at, lo, hi, new_table[copied])
        to = new_table[number]
        for offset, (key, code) in enumerate(sorted(merged[number].items())):
            out[IDS_AT + 16 * (to + offset) : IDS_AT + 16 * (to + offset + 1)] = key
            out[status_at + to + offset] = code
        copied = number + 1
    _copy_run(out, current, status_at, old_table[copied], old_table[BUCKETS], new_table[copied])


def _merge(
    current: Snapshot,
    table: tuple[int, ...],
    number: int,
    new: dict[bytes, int],
    gone: Collection[bytes] = (),
) -> dict[bytes, int]:
    """Return the records of one bucket with `new` applied and `gone` dropped.

    The first of duplicates wins (the latest listed, see publish_full).
    """
    lo, hi = table[number], table[number + 1]
    ids, codes = current.ids(lo, hi), current.codes(lo, hi)
    merged: dict[bytes, int] = {}
    for i in range(hi - lo):
        key = ids[16 * i : 16 * i + 16]
        if key not in gone:
            merged.setdefault(key, codes[i])
    merged.update(new)
    return merged


def _shifted(table: tuple[int, ...], merged: dict[int, dict[bytes, int]]) -> list[int]:
    """Return the bucket table after replacing the buckets in `merged`."""
    shift, new_table = 0, list(table)
    for number in range(BUCKETS):
        new_table[number] += shift
        if number in merged:
            shift += len(merged[number]) - (table[number + 1] - table[number])
    new_table[BUCKETS] += shift
    return new_table


def _copy_run(out: mmap.mmap, current: Snapshot, status_at: int, lo: int, hi: int, to: int) -> None:
    """Copy old records lo..hi to position `to` of the new file."""
    if hi > lo:
        out[IDS_AT + 16 * to : IDS_AT + 16 * (to + hi - lo)] = current.ids(lo, hi)
        out[status_at + to : status_at + to + hi - lo] = current.codes(lo, hi)


def _read_deleted(current: Snapshot) -> dict[bytes, float]:
    """Return the deleted section as a dict."""
    raw = current.deleted_section()
    return {key: when for key, when in DELETED.iter_unpack(raw)}


def _put_deleted(out: mmap.mmap, header: Header, deleted: dict[bytes, float]) -> None:
    """Write the deleted section, sorted by id, at the end of the file."""
    at = header.size() - DELETED.size * header.deleted
    out[at:] = b"".join(DELETED.pack(key, deleted[key]) for key in sorted(deleted))


def _generation_after(path: Path) -> int:
    """Return the generation that follows the current snapshot's (1 if none is readable)."""
    try:
        return Snapshot.open(path).header.generation + 1
    except SnapshotUnreadable:
        return 1


def _write(path: Path, header: Header, fill: Callable[[mmap.mmap, Header], None]) -> None:
    """Write a new file through `fill`, seal it with its crc, and publish it over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.ftruncate(fd, header.size())
        with mmap.mmap(fd, header.size()) as out:
            fill(out, header)
            out[:TABLE_AT] = header.pack()
            with memoryview(out) as view, view[CRC_FROM:] as body:
                crc = zlib.crc32(body)
            out[:TABLE_AT] = header.pack(crc)
    except BaseException:
        os.unlink(tmp)
        raise
    finally:
        os.close(fd)
    _replace(tmp, path)


def _replace(tmp: str, path: Path) -> None:
    """Rename `tmp` over `path`, then flag the file it replaced as superseded."""
    try:
        old: int | None = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        old = None
    try:
        os.replace(tmp, path)
        if old is not None:
            os.pwrite(old, b"\1", SUPERSEDED_AT)
    finally:
        if old is not None:
            os.close(old)
