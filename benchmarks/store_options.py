"""Measure the candidate host-wide stores for the server index (issue 12).

One refresher per host publishes the index; every Gunicorn worker reads it.
This script compares, at N servers (default 1,000,000), with no service running:

- ``dict``: today's per-worker ``dict[str, str]`` (the baseline);
- ``mmap``: a memory-mapped snapshot file of 16-byte ids grouped in 65,536
  buckets by their first two bytes (sorted, so the same file also serves a
  plain ``bisect`` over all N ids), replaced atomically by rename;
- ``sqlite``: SQLite in WAL mode, ``WITHOUT ROWID`` table keyed by the 16-byte id;
- ``lmdb``: LMDB (only if the ``lmdb`` package is installed).

It reports build/publish time, file size, memory added per reader process
(``/proc/self/smaps_rollup``, measured in a fresh reader process while this
process also maps the file, so the shared pages show in PSS), lookup cost per
hit and per miss from Python, the cost of a full and of an incremental
republish, and how long a reader thread stalls meanwhile. Every process runs
one after the other: one core at a time.

    nice -n 10 python -m benchmarks.store_options                   # about 1 minute
    nice -n 10 python -m benchmarks.store_options --n 100000        # a quick look
    nice -n 10 python -m benchmarks.store_options --simcloud 1000000
"""

from __future__ import annotations

import argparse
import bisect
import gc
import json
import mmap
import os
import random
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from array import array
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

STATUSES = (
    "ACTIVE", "BUILD", "SHUTOFF", "ERROR", "PAUSED", "SUSPENDED", "RESCUE", "VERIFY_RESIZE",
    "REBOOT", "HARD_REBOOT", "MIGRATING", "SHELVED", "SHELVED_OFFLOADED", "SOFT_DELETED",
    "DELETED", "UNKNOWN",
)  # fmt: skip
MB = 1e6

# -- the snapshot file format -----------------------------------------------------
# header | 65,537 uint32 bucket starts (record numbers) | N ids of 16 bytes | N status bytes
# Within a bucket (the id's first two bytes) ids are sorted, so the whole id array is.
MAGIC = b"IAPISNP1"
HEADER = struct.Struct("<8sB7xQQd")  # magic, superseded, count, generation, listed_at
BUCKETS = 1 << 16
TABLE_AT = 64
KEYS_AT = TABLE_AT + 4 * (BUCKETS + 1)
SUPERSEDED_AT = 8


def key_of(canonical: str) -> bytes:
    """Return the 16 bytes of a canonical (lower-case, hyphenated) UUID."""
    return bytes.fromhex(canonical.replace("-", ""))


def bucket_of(key: bytes) -> int:
    """Return the bucket of a 16-byte id: its first two bytes."""
    return key[0] << 8 | key[1]


def write_snapshot(path: Path, records: Iterable[tuple[bytes, int]], generation: int) -> float:
    """Write sorted (id, status) records as a snapshot, atomically; return seconds taken."""
    started = time.perf_counter()
    counts = [0] * BUCKETS
    keys = bytearray()
    statuses = bytearray()
    for key, status in records:
        counts[bucket_of(key)] += 1
        keys += key
        statuses.append(status)
    table = array("I", [0] * (BUCKETS + 1))
    total = 0
    for number, count in enumerate(counts):
        table[number] = total
        total += count
    table[BUCKETS] = total
    _publish(path, [HEADER.pack(MAGIC, 0, total, generation, time.time()), table, keys, statuses])
    return time.perf_counter() - started


def _publish(path: Path, parts: list[Any]) -> None:
    """Write `parts` to a new file, rename it over `path`, then flag the old one superseded."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        out.write(parts[0].ljust(TABLE_AT, b"\0"))
        for part in parts[1:]:
            out.write(part)
    old = os.open(path, os.O_RDWR) if path.exists() else None
    os.replace(tmp, path)
    if old is not None:
        os.pwrite(old, b"\1", SUPERSEDED_AT)  # readers that map it reopen on their next lookup
        os.close(old)


def republish_with_changes(path: Path, changes: dict[bytes, int], generation: int) -> float:
    """Publish a new snapshot = the current one + `changes` (upserts); return seconds taken.

    Unchanged bucket runs are copied as whole slices; only changed buckets are re-sorted.
    """
    started = time.perf_counter()
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        n = HEADER.unpack_from(mm, 0)[2]
        table = array("I")
        table.frombytes(mm[TABLE_AT:KEYS_AT])
        stat_at = KEYS_AT + 16 * n
        by_bucket: dict[int, dict[bytes, int]] = {}
        for key, status in changes.items():
            by_bucket.setdefault(bucket_of(key), {})[key] = status
        keys, statuses = bytearray(), bytearray()
        new_table = array("I", [0] * (BUCKETS + 1))
        copied = 0  # first bucket not yet copied
        shift = 0  # records added so far
        for number in sorted(by_bucket):
            lo, hi = table[copied], table[number]
            keys += mm[KEYS_AT + 16 * lo : KEYS_AT + 16 * hi]
            statuses += mm[stat_at + lo : stat_at + hi]
            for b in range(copied, number + 1):
                new_table[b] = table[b] + shift
            end = table[number + 1]
            merged = {
                mm[KEYS_AT + 16 * i : KEYS_AT + 16 * i + 16]: mm[stat_at + i]
                for i in range(table[number], end)
            }
            merged.update(by_bucket[number])
            for key in sorted(merged):
                keys += key
                statuses.append(merged[key])
            shift += len(merged) - (end - table[number])
            copied = number + 1
        lo = table[copied]
        keys += mm[KEYS_AT + 16 * lo : stat_at]
        statuses += mm[stat_at + lo : stat_at + n]
        for b in range(copied, BUCKETS + 1):
            new_table[b] = table[b] + shift
    total = n + shift
    header = HEADER.pack(MAGIC, 0, total, generation, time.time())
    _publish(path, [header, new_table, keys, statuses])
    return time.perf_counter() - started


def write_snapshot_from_pages(
    path: Path, pages: Iterable[list[tuple[str, str]]], generation: int
) -> tuple[float, int]:
    """Build a snapshot from listing pages as the refresher reads them; return (s, count).

    No object per server is kept: ids go to one bytearray in arrival order, then a
    counting sort by bucket places them (ids within a bucket stay unsorted, which the
    bucket lookup does not need). About 2 x 17 bytes per server at the peak.
    """
    started = time.perf_counter()
    codes = {name: code for code, name in enumerate(STATUSES)}
    unknown = codes["UNKNOWN"]
    ids, statuses = bytearray(), bytearray()
    for page in pages:
        for server_id, status in page:
            ids += bytes.fromhex(server_id.replace("-", ""))
            statuses.append(codes.get(status, unknown))
    n = len(statuses)
    counts = array("I", bytes(4 * (BUCKETS + 1)))
    for i in range(0, 16 * n, 16):
        counts[ids[i] << 8 | ids[i + 1]] += 1
    table = array("I", bytes(4 * (BUCKETS + 1)))
    total = 0
    for number in range(BUCKETS):
        table[number] = total
        total += counts[number]
    table[BUCKETS] = total
    slot = array("I", table)
    keys, ordered = bytearray(16 * n), bytearray(n)
    for i in range(n):
        at = 16 * i
        number = ids[at] << 8 | ids[at + 1]
        to = slot[number]
        slot[number] = to + 1
        keys[16 * to : 16 * to + 16] = ids[at : at + 16]
        ordered[to] = statuses[i]
    del ids, statuses
    _publish(path, [HEADER.pack(MAGIC, 0, n, generation, time.time()), table, keys, ordered])
    return time.perf_counter() - started, n


def _pages_from(directory: Path, size: int = 1000) -> Iterable[list[tuple[str, str]]]:
    """Yield the stored ids as listing pages of (canonical id, status name)."""
    raw = (directory / "ids.bin").read_bytes()
    statuses = (directory / "statuses.bin").read_bytes()
    for start in range(0, len(statuses), size):
        yield [
            (str(uuid.UUID(bytes=raw[16 * i : 16 * i + 16])), STATUSES[statuses[i]])
            for i in range(start, min(start + size, len(statuses)))
        ]


def stream_build_main(directory: Path) -> None:
    """Run in a fresh process: build from pages, check it, print time and peak memory."""
    samples = json.loads((directory / "samples.json").read_text(encoding="ascii"))
    gc.collect()
    before = _status_mb("VmRSS")
    seconds, n = write_snapshot_from_pages(directory / "stream.snap", _pages_from(directory), 1)
    peak = _status_mb("VmHWM") - before
    reader = Snapshot(directory / "stream.snap")
    wrong = sum(
        reader.status(u) != s for u, s in zip(samples["hits"], samples["expected"], strict=True)
    )
    wrong += sum(reader.status(u) is not None for u in samples["misses"])
    result = {"build_s": round(seconds, 2), "count": n, "peak_rss_mb": round(peak, 1)}
    print(json.dumps({**result, "wrong_answers": wrong}))


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / MB
    raise KeyError(field)


class Snapshot:
    """A worker's reader of the snapshot file: no lock, no system call per lookup."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._open()

    def _open(self) -> None:
        with open(self._path, "rb") as f:
            self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        _, _, self.count, self.generation, self.listed_at = HEADER.unpack_from(self._mm, 0)
        self._stat_at = KEYS_AT + 16 * self.count
        self._ids = _Ids(self._mm, self.count)

    def status(self, canonical: str) -> int | None:
        """Return the status code of a listed id, None if it is not listed (bucket + find)."""
        mm = self._mm
        if mm[SUPERSEDED_AT]:
            self._open()
            mm = self._mm
        key = bytes.fromhex(canonical.replace("-", ""))
        lo, hi = struct.unpack_from("<II", mm, TABLE_AT + 4 * (key[0] << 8 | key[1]))
        run = mm[KEYS_AT + 16 * lo : KEYS_AT + 16 * hi]
        at = run.find(key)
        while at > 0 and at % 16:  # a match across two ids: look further
            at = run.find(key, at + 1)
        return None if at < 0 else mm[self._stat_at + lo + at // 16]

    def status_bisect(self, canonical: str) -> int | None:
        """The same answer by a plain bisect over all ids (about 20 Python-level probes)."""
        mm = self._mm
        if mm[SUPERSEDED_AT]:
            self._open()
        key = bytes.fromhex(canonical.replace("-", ""))
        at = bisect.bisect_left(self._ids, key)
        if at < self.count and self._ids[at] == key:
            return self._mm[self._stat_at + at]
        return None


class _Ids:
    """The id array of a snapshot as a sequence of 16-byte values (for bisect)."""

    __slots__ = ("_mm", "_n")

    def __init__(self, mm: mmap.mmap, n: int) -> None:
        self._mm, self._n = mm, n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> bytes:
        at = KEYS_AT + 16 * i
        return self._mm[at : at + 16]


# -- SQLite ---------------------------------------------------------------------------
SQLITE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS listing (uuid BLOB PRIMARY KEY, status INTEGER NOT NULL) "
    "WITHOUT ROWID"
)


def sqlite_connect(path: Path, *, mmap_size: int = 0) -> sqlite3.Connection:
    """Open the store as every process would: WAL, autocommit, no fsync."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    if mmap_size:
        db.execute(f"PRAGMA mmap_size={mmap_size}")
    db.execute(SQLITE_SCHEMA)
    return db


def sqlite_write(
    db: sqlite3.Connection, rows: Iterable[tuple[bytes, int]], *, replace: bool
) -> float:
    """Upsert rows in one transaction (after deleting all rows, if `replace`); return seconds."""
    started = time.perf_counter()
    db.execute("BEGIN IMMEDIATE")
    if replace:
        db.execute("DELETE FROM listing")
    db.executemany("INSERT OR REPLACE INTO listing VALUES (?, ?)", rows)
    db.execute("COMMIT")
    return time.perf_counter() - started


def sqlite_reader(path: Path, *, mmap_size: int = 0) -> Callable[[str], int | None]:
    """Return a lookup function over one connection (a worker keeps one per thread)."""
    db = sqlite_connect(path, mmap_size=mmap_size)
    sql = "SELECT status FROM listing WHERE uuid = ?"

    def status(canonical: str) -> int | None:
        row = db.execute(sql, (bytes.fromhex(canonical.replace("-", "")),)).fetchone()
        return None if row is None else int(row[0])

    return status


# -- LMDB -------------------------------------------------------------------------------
def lmdb_open(path: Path, *, readonly: bool = False) -> Any:
    """Open the LMDB environment (a directory), 1 GiB of address space, no fsync."""
    import lmdb

    return lmdb.open(
        str(path),
        map_size=1 << 30,
        readonly=readonly,
        sync=False,
        metasync=False,
        readahead=False,
        max_readers=512,
    )


def lmdb_write(
    env: Any, rows: Iterable[tuple[bytes, int]], *, replace: bool, append: bool
) -> float:
    """Put rows in one write transaction (after emptying, if `replace`); return seconds."""
    started = time.perf_counter()
    with env.begin(write=True) as txn:
        if replace:
            txn.drop(env.open_db(), delete=False)
        for key, status in rows:
            txn.put(key, bytes((status,)), append=append)
    return time.perf_counter() - started


def lmdb_reader(path: Path, env: Any = None) -> Callable[[str], int | None]:
    """Return a lookup function: one read transaction per lookup (sees the newest data)."""
    env = env or lmdb_open(path, readonly=True)  # LMDB allows one environment per process

    def status(canonical: str) -> int | None:
        with env.begin() as txn:
            value = txn.get(bytes.fromhex(canonical.replace("-", "")))
        return None if value is None else value[0]

    return status


# -- measuring ---------------------------------------------------------------------------
def smaps() -> dict[str, float]:
    """Return this process's memory from /proc/self/smaps_rollup, in MB."""
    out: dict[str, float] = {}
    for line in Path("/proc/self/smaps_rollup").read_text(encoding="ascii").splitlines()[1:]:
        name, _, rest = line.partition(":")
        out[name] = int(rest.split()[0]) * 1024 / MB
    return out


def memory_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Return what a reader added: RSS, PSS, and PSS split into anonymous and file pages."""

    def pss_file(m: dict[str, float]) -> float:
        return m.get("Pss_File", 0.0) + m.get("Pss_Shmem", 0.0)

    return {
        "rss_mb": round(after["Rss"] - before["Rss"], 2),
        "pss_mb": round(after["Pss"] - before["Pss"], 2),
        "pss_anon_mb": round(after.get("Pss_Anon", 0.0) - before.get("Pss_Anon", 0.0), 2),
        "pss_file_mb": round(pss_file(after) - pss_file(before), 2),
    }


def per_call_us(fn: Callable[[str], object], items: list[str], repeats: int = 3) -> float:
    """Return the best of `repeats` mean times per call, in microseconds."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, (time.perf_counter() - started) / len(items))
    return round(best * 1e6, 3)


def make_ids(n: int, seed: int) -> tuple[list[bytes], bytearray]:
    """Return n distinct uuid4 ids (16 bytes) and their statuses (mostly ACTIVE)."""
    rng = random.Random(seed)  # noqa: S311 - test data
    ids = list({uuid.UUID(int=rng.getrandbits(128), version=4).bytes for _ in range(n)})
    rng.shuffle(ids)
    weights = [0] * 95 + [2] * 3 + [14] + [1]  # ACTIVE, SHUTOFF, DELETED, BUILD
    statuses = bytearray(weights[rng.randrange(100)] for _ in range(len(ids)))
    return ids, statuses


def canonical(key: bytes) -> str:
    """Return the canonical text form of a 16-byte id."""
    return str(uuid.UUID(bytes=key))


# -- one reader process --------------------------------------------------------------------
def reader_main(kind: str, directory: Path) -> None:
    """Run in a fresh process: open one store, look up the samples, print JSON."""
    samples = json.loads((directory / "samples.json").read_text(encoding="ascii"))
    hits, misses, expected = samples["hits"], samples["misses"], samples["expected"]
    gc.collect()
    before = smaps()
    opened = time.perf_counter()
    lookup = _open_reader(kind, directory)
    opened = time.perf_counter() - opened
    after_open = smaps()
    wrong = sum(lookup(u) != s for u, s in zip(hits, expected, strict=True))
    wrong += sum(lookup(u) is not None for u in misses)
    result = {
        "kind": kind,
        "open_ms": round(opened * 1e3, 2),
        "wrong_answers": wrong,
        "hit_us": per_call_us(lookup, hits),
        "miss_us": per_call_us(lookup, misses),
        "memory_after_open": memory_delta(before, after_open),
        "memory_after_lookups": memory_delta(before, smaps()),
    }
    print(json.dumps(result))


def _open_reader(kind: str, directory: Path) -> Callable[[str], int | None]:
    if kind == "dict":  # today: every worker builds and holds its own table
        table: dict[str, str] = {}
        raw = (directory / "ids.bin").read_bytes()
        statuses = (directory / "statuses.bin").read_bytes()
        for i, status in enumerate(statuses):
            table[str(uuid.UUID(bytes=raw[16 * i : 16 * i + 16]))] = sys.intern(STATUSES[status])
        del raw
        codes = {name: code for code, name in enumerate(STATUSES)}

        def from_dict(c: str) -> int | None:
            found = table.get(c)
            return None if found is None else codes[found]

        return from_dict
    if kind == "mmap":
        return Snapshot(directory / "listing.snap").status
    if kind == "mmap-bisect":
        return Snapshot(directory / "listing.snap").status_bisect
    if kind == "sqlite":
        return sqlite_reader(directory / "listing.sqlite3")
    if kind == "sqlite-mmap":
        return sqlite_reader(directory / "listing.sqlite3", mmap_size=256 << 20)
    if kind == "lmdb":
        return lmdb_reader(directory / "listing.lmdb")
    raise SystemExit(f"unknown store {kind!r}")


def run_reader(kind: str, directory: Path, timeout: float = 110.0) -> dict[str, Any]:
    """Run one reader process (niced like this one) and return its JSON."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.store_options",
            "--reader",
            kind,
            "--dir",
            str(directory),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"reader {kind} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


class MappedByUs:
    """Map and touch a file in this process too, so a reader's PSS shows the sharing."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        self.mm = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        sum(self.mm[i] for i in range(0, len(self.mm), mmap.PAGESIZE))

    def close(self) -> None:
        self.mm.close()
        self._file.close()


def stall_during(
    lookup: Callable[[str], object], probe: list[str], work: Callable[[], float]
) -> dict[str, float]:
    """Run `work` while a reader thread looks up; return its time and the reader's worst wait.

    One process, so the GIL serialises the two threads: the worst wait is an upper bound
    of what a separate reader process would see, and shows whether the store blocks readers.
    """
    stop = threading.Event()
    worst, count = [0.0], [0]

    def read() -> None:
        i = 0
        while not stop.is_set():
            started = time.perf_counter()
            lookup(probe[i % len(probe)])
            worst[0] = max(worst[0], time.perf_counter() - started)
            i += 1
        count[0] = i

    thread = threading.Thread(target=read)
    thread.start()
    try:
        seconds = work()
    finally:
        stop.set()
        thread.join()
    return {
        "seconds": round(seconds, 3),
        "reader_lookups": count[0],
        "reader_worst_ms": round(worst[0] * 1e3, 2),
    }


def file_mb(*paths: Path) -> float:
    """Return the disk blocks used by these files (or directories' files), in MB."""
    total = 0
    for path in paths:
        files = [p for p in path.iterdir() if p.is_file()] if path.is_dir() else [path]
        total += sum(p.stat().st_blocks * 512 for p in files if p.exists())
    return round(total / MB, 2)


def main_stores(args: argparse.Namespace) -> dict[str, Any]:
    """Build every store at N, measure readers and republishes; return the results."""
    directory = Path(tempfile.mkdtemp(prefix="i12-stores-", dir=args.dir))
    results: dict[str, Any] = {"n": args.n, "dir": str(directory), "python": sys.version.split()[0]}
    try:
        _measure_stores(args, directory, results)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return results


def _measure_stores(args: argparse.Namespace, directory: Path, results: dict[str, Any]) -> None:
    started = time.perf_counter()
    ids, statuses = make_ids(args.n, args.seed)
    log(f"{len(ids):,} ids made in {time.perf_counter() - started:.1f}s")
    (directory / "ids.bin").write_bytes(b"".join(ids))
    (directory / "statuses.bin").write_bytes(statuses)
    rng = random.Random(args.seed + 1)  # noqa: S311
    picks = [rng.randrange(len(ids)) for _ in range(args.lookups)]
    known = set(ids)
    misses = []
    while len(misses) < args.lookups:
        key = uuid.UUID(int=rng.getrandbits(128), version=4).bytes
        if key not in known:
            misses.append(canonical(key))
    samples = {
        "hits": [canonical(ids[i]) for i in picks],
        "expected": [statuses[i] for i in picks],
        "misses": misses,
    }
    (directory / "samples.json").write_text(json.dumps(samples), encoding="ascii")
    rows = sorted(zip(ids, statuses, strict=True))
    stores: dict[str, Any] = {}
    results["stores"] = stores

    # Converting the canonical string: every store but the dict pays it per lookup.
    stores["key_conversion_us"] = per_call_us(key_of, samples["hits"])

    # -- build --------------------------------------------------------------------------
    snap = directory / "listing.snap"
    stores["mmap"] = {"build_s": round(write_snapshot(snap, rows, 1), 3), "file_mb": file_mb(snap)}
    log(f"mmap snapshot built: {stores['mmap']}")
    db_path = directory / "listing.sqlite3"
    db = sqlite_connect(db_path)
    build = sqlite_write(db, rows, replace=False)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    stores["sqlite"] = {"build_s": round(build, 3), "file_mb": file_mb(db_path)}
    log(f"sqlite built: {stores['sqlite']}")
    lmdb_path = directory / "listing.lmdb"
    env = None
    try:
        env = lmdb_open(lmdb_path)
    except ImportError:
        stores["lmdb"] = {"skipped": "the lmdb package is not installed"}
    if env is not None:
        build = lmdb_write(env, rows, replace=False, append=True)
        stores["lmdb"] = {"build_s": round(build, 3), "file_mb": file_mb(lmdb_path)}
        log(f"lmdb built: {stores['lmdb']}")

    # -- readers, one fresh process each, while this process maps the same files --------
    ours = [MappedByUs(snap), MappedByUs(db_path)]
    if env is not None:
        ours.append(MappedByUs(lmdb_path / "data.mdb"))
    kinds = ["dict", "mmap", "mmap-bisect", "sqlite", "sqlite-mmap"] + (["lmdb"] if env else [])
    readers = {}
    for kind in kinds:
        readers[kind] = run_reader(kind, directory)
        log(f"reader {kind}: {readers[kind]}")
    results["readers"] = readers
    stores["mmap"]["from_listing_pages"] = run_reader("stream-build", directory)
    log(f"mmap snapshot from listing pages: {stores['mmap']['from_listing_pages']}")
    for mapped in ours:
        mapped.close()

    # -- republish while a reader keeps reading ---------------------------------------------
    changes = _changes(rows, rng, args.changes)
    probe = samples["hits"][:1000]
    snapshot = Snapshot(snap)
    stores["mmap"]["full_republish"] = stall_during(
        snapshot.status, probe, lambda: write_snapshot(snap, rows, 2)
    )
    stores["mmap"]["incremental_republish"] = stall_during(
        snapshot.status, probe, lambda: republish_with_changes(snap, changes, 3)
    )
    assert snapshot.status(canonical(next(iter(changes)))) == next(iter(changes.values()))
    reopened = Snapshot(snap)
    write_snapshot(snap, rows, 4)
    started = time.perf_counter()
    reopened.status(probe[0])  # sees the flag, maps the new file
    stores["mmap"]["reader_switch_us"] = round((time.perf_counter() - started) * 1e6, 1)
    log(f"mmap republish: {stores['mmap']}")

    reader = sqlite_reader(db_path)
    stores["sqlite"]["incremental_upsert"] = stall_during(
        reader, probe, lambda: sqlite_write(db, changes.items(), replace=False)
    )
    stores["sqlite"]["full_replace_in_place"] = stall_during(
        reader, probe, lambda: sqlite_write(db, rows, replace=True)
    )
    stores["sqlite"]["wal_mb_after_full_replace"] = file_mb(Path(f"{db_path}-wal"))
    stores["sqlite"]["hit_us_with_big_wal"] = per_call_us(
        sqlite_reader(db_path), samples["hits"][:20000]
    )
    started = time.perf_counter()
    busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    stores["sqlite"]["checkpoint_busy"] = busy
    stores["sqlite"]["checkpoint_s"] = round(time.perf_counter() - started, 3)
    stores["sqlite"]["file_mb_after_full_replace"] = file_mb(db_path)
    log(f"sqlite republish: {stores['sqlite']}")

    if env is not None:
        reader = lmdb_reader(lmdb_path, env)
        stores["lmdb"]["incremental_upsert"] = stall_during(
            reader, probe, lambda: lmdb_write(env, changes.items(), replace=False, append=False)
        )
        stores["lmdb"]["full_replace_in_place"] = stall_during(
            reader, probe, lambda: lmdb_write(env, rows, replace=True, append=True)
        )
        stores["lmdb"]["file_mb_after_full_replace"] = file_mb(lmdb_path)
        log(f"lmdb republish: {stores['lmdb']}")
        env.close()


def _changes(rows: list[tuple[bytes, int]], rng: random.Random, count: int) -> dict[bytes, int]:
    """Return `count` upserts: half new servers, half status changes of listed ones."""
    changes = {uuid.UUID(int=rng.getrandbits(128), version=4).bytes: 0 for _ in range(count // 2)}
    for _ in range(count - len(changes)):
        changes[rows[rng.randrange(len(rows))][0]] = STATUSES.index("SHUTOFF")
    return changes


# -- the simulated cloud at N -------------------------------------------------------------
def main_simcloud(n: int, pages: int) -> dict[str, Any]:
    """Populate the simulated cloud in this process; time the listing Nova pages over HTTP."""
    from instanceapi.testing import SimulatedCloud
    from instanceapi.testing.clients import password_session

    gc.collect()
    before = smaps()["Rss"]
    with SimulatedCloud() as cloud:
        started = time.perf_counter()
        cloud.populate(n)
        created = time.perf_counter() - started
        gc.collect()
        grown = smaps()["Rss"] - before
        log(f"simulated cloud: {n:,} servers in {created:.1f}s, RSS +{grown:.0f} MB")
        session = password_session(cloud, timeout=110)
        url = cloud.nova_url() + "/servers/detail"
        headers = {"OpenStack-API-Version": "compute 2.96"}

        def page(**params: str) -> tuple[float, list[dict[str, Any]]]:
            started = time.perf_counter()
            answer = session.get(
                url, params={"all_tenants": "1", "limit": "1000", **params}, headers=headers
            )
            return time.perf_counter() - started, answer.json()["servers"]

        session.get(url, params={"limit": "1"}, headers=headers)  # token and discovery, untimed
        seconds, first = page()
        walk = [seconds]
        marker = first[-1]["id"]
        for _ in range(pages - 1):
            seconds, servers = page(marker=marker)
            walk.append(seconds)
            marker = servers[-1]["id"]
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        changes_seconds, changed = page(**{"changes-since": since})
        result = {
            "n": n,
            "create_s": round(created, 1),
            "rss_mb": round(grown, 0),
            "rss_bytes_per_server": round(grown * MB / n),
            "page_1000_s_first": round(walk[0], 3),
            "page_1000_s_mean": round(sum(walk) / len(walk), 3),
            "pages_timed": len(walk),
            "servers_on_first_page": len(first),
            "full_listing_estimate_s": round(sum(walk) / len(walk) * n / 1000, 0),
            "empty_changes_since_s": round(changes_seconds, 3),
            "changes_since_returned": len(changed),
        }
    return result


def log(message: str) -> None:
    """Progress on stderr."""
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Parse options; run the store comparison, the simulated-cloud check, or one reader."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.store_options", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--n", type=int, default=1_000_000, help="servers in the index")
    parser.add_argument("--lookups", type=int, default=100_000, help="hits and misses timed")
    parser.add_argument(
        "--changes", type=int, default=1000, help="upserts of an incremental publish"
    )
    parser.add_argument(
        "--dir",
        default="/dev/shm",  # noqa: S108 - a private mkdtemp is made inside
        help="where the stores go (tmpfs like /run)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--simcloud", type=int, metavar="N", help="measure the simulated cloud at N instead"
    )
    parser.add_argument("--pages", type=int, default=20, help="listing pages timed (--simcloud)")
    parser.add_argument("--reader", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.reader == "stream-build":
        stream_build_main(Path(args.dir))
        return 0
    if args.reader:
        reader_main(args.reader, Path(args.dir))
        return 0
    results = main_simcloud(args.simcloud, args.pages) if args.simcloud else main_stores(args)
    text = json.dumps(results, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
