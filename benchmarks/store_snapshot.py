"""Measure the shipped snapshot store (instanceapi.check.store) at N servers (issue 12).

    nice -n 10 python -m benchmarks.store_snapshot              # N = 1,000,000, ~30 s
    nice -n 10 python -m benchmarks.store_snapshot --n 100000

Reports: publish_full from a stream of (id, status), publish_changes of 1,000
upserts, file size, the reader's open/remap cost (which verifies the crc32),
lookup cost per hit and per miss (best of 3), and the RSS publish_full adds at
its peak, measured alone in a fresh process fed a lazily generated listing.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from instanceapi.check.store.reader import IndexView
from instanceapi.check.store.snapshot import Snapshot
from instanceapi.check.store.writer import publish_changes, publish_full

WRITER_ONLY = [sys.executable, "-m", "benchmarks.store_snapshot", "--writer-only"]


def ids(n: int, seed: int) -> list[str]:
    """Return n random canonical UUIDs."""
    rng = random.Random(seed)  # noqa: S311 - test data
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)]


def per_call_us(fn: Callable[[str], object], items: list[str]) -> float:
    """Return the best of 3 mean costs of fn over items, in microseconds."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, (time.perf_counter() - started) / len(items))
    return round(best * 1e6, 2)


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, default=Path("/dev/shm"))  # noqa: S108 - a private directory inside
    parser.add_argument("--writer-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        path = Path(directory) / "t.snap"
        if args.writer_only:
            print(json.dumps(writer_peak(path, args.n)))
            return 0
        # The writer's peak memory, measured alone: records generated lazily, as pages arrive.
        alone = subprocess.run(
            [*WRITER_ONLY, "--n", str(args.n), "--dir", str(directory)],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        result = {**measure(path, ids(args.n, 1), args.lookups), **json.loads(alone.stdout)}
    print(json.dumps(result))
    return 0


def writer_peak(path: Path, n: int) -> dict[str, float]:
    """Return the RSS publish_full adds at its peak, from a lazily generated listing."""
    rng = random.Random(1)  # noqa: S311 - test data
    records = ((str(uuid.UUID(int=rng.getrandbits(128), version=4)), "ACTIVE") for _ in range(n))
    before = _status_kb("VmRSS")
    publish_full(path, records, listed_from=time.monotonic(), flags=1)
    return {"publish_full_peak_rss_added_mb": round((_status_kb("VmHWM") - before) / 1e3, 1)}


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def measure(path: Path, listed: list[str], lookups: int) -> dict[str, float]:
    """Publish, republish and read `listed`; return the figures."""

    def stream() -> Iterator[tuple[str, str]]:
        for server_id in listed:
            yield server_id, "ACTIVE"

    started = time.perf_counter()
    publish_full(path, stream(), listed_from=time.monotonic(), flags=1)
    full_s = time.perf_counter() - started
    changes = {server_id: "SHUTOFF" for server_id in listed[:500]}
    changes.update({server_id: "BUILD" for server_id in ids(500, 2)})
    started = time.perf_counter()
    publish_changes(path, changes, listed_from=time.monotonic())
    changes_s = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(10):
        Snapshot.open(path)
    open_ms = (time.perf_counter() - started) * 100
    view = IndexView(path)
    rng = random.Random(3)  # noqa: S311 - test data
    return {
        "n": len(listed),
        "file_mb": round(path.stat().st_size / 1e6, 2),
        "publish_full_s": round(full_s, 2),
        "publish_changes_1000_s": round(changes_s, 3),
        "open_or_remap_ms": round(open_ms, 2),
        "hit_us": per_call_us(view.lookup, rng.sample(listed, lookups)),
        "miss_us": per_call_us(view.lookup, ids(lookups, 4)),
    }


if __name__ == "__main__":
    raise SystemExit(main())
