"""Benchmark instanceapi against the simulated cloud and its own framework ceiling.

Run from the repository root (needs ``wrk``: ``apt-get install -y wrk``)::

    python -m benchmarks.bench                                # N = 1,000 / 10,000 / 100,000
    python -m benchmarks.bench --sizes 1000 --duration 3      # a quick look
    python -m benchmarks.bench --sizes 1000000 --workers 4    # a million: opt-in
    python -m benchmarks.bench --json results.json            # keep the numbers

It first starts one simulated cloud per N, each in its own process (N instances
plus some deleted ones, 20 ms per Nova request plus 0.05 ms per server
returned), so that their servers are older than the service's changes-since
margin when measured (see ``benchmarks/sizes.py``). Then, for each N:

1. the ceiling, ``benchmarks/ceiling.py`` (a bare Falcon route), under the same
   Gunicorn settings, workers and wrk connections as the service;
2. the service under Gunicorn with the bundled config: RSS, PSS and USS of
   every process (master, workers, any other child such as a refresher) with
   the index empty (Nova held back); then the bootstrap: seconds from Nova's
   release until the index is complete (``/readyz`` 200, the index gauge at the
   cloud's size, the listing read, checks answered from the index), the Nova
   requests and servers listed meanwhile, and the memory again;
3. steady state: ``--steady`` idle seconds counted at the cloud (requests,
   listing pages, servers listed), scaled to an hour;
4. upstream requests per check (the cloud's counters) for a first sweep of a
   fresh list of 90% existing / 10% absent UUIDs, each checked once on a new
   connection, and for a repeated sweep of the same list;
5. ``GET /check/{uuid}`` with wrk over that list for ``--duration`` seconds
   (after a warm-up): requests/s, p50, p99, and errors (socket errors,
   timeouts, and any answer but 200 for an existing / 404 for an absent UUID);
   then the ceiling again, so that a change in the machine's load shows;
6. ``POST /check`` with 1,000-UUID batches: UUIDs/s;
7. one worker killed with SIGKILL: Nova requests (pages, servers listed, GETs)
   from the kill until its replacement answers from the index and Nova is quiet.

It prints two Markdown tables, the details behind them, optionally a
tracemalloc measurement of an index built in-process, and the issue's targets
marked met or not met. Progress goes to stderr. Every process runs on 127.0.0.1 and is
stopped at the end, also on Ctrl-C or error. Exit status: 0 when every target
is met, 1 when one is not, 2 on a usage error, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path
from types import FrameType

from benchmarks import report
from benchmarks.load import wrk_path
from benchmarks.memory import TracedIndex, traced_index
from benchmarks.phases import Settings, progress
from benchmarks.procfs import machine
from benchmarks.sizes import measure_size, prepare

MAX_SIZE = 1_000_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench",
        description="Benchmark instanceapi against the simulated cloud and the Falcon ceiling.",
    )
    add = parser.add_argument
    add("--sizes", default="1000,10000,100000", help="instance counts N, comma-separated")
    add("--duration", type=float, default=10.0, help="seconds of each measured wrk run")
    add("--warmup", type=float, default=2.0, help="seconds of wrk before each measured run")
    add(
        "--connections", type=int, default=64, help="wrk connections for GET /check and the ceiling"
    )
    add("--bulk-connections", type=int, default=4, help="wrk connections for POST /check")
    add("--workers", type=int, default=os.cpu_count() or 1, help="Gunicorn workers")
    add("--sweep-size", type=int, default=2000, help="UUIDs per sweep list (at most N)")
    add("--sweep-concurrency", type=int, default=16, help="parallel checks during a sweep")
    add("--latency-ms", type=float, default=20.0, help="simulated Nova latency per request")
    add("--per-server-ms", type=float, default=0.05, help="simulated latency per server listed")
    add("--seed", type=int, default=0, help="seed of the UUID lists")
    add("--steady", type=float, default=60.0, help="seconds of the idle steady-state window")
    add(
        "--kill-worker",
        type=int,
        choices=(0, 1),
        default=1,
        help="1: SIGKILL one worker at the end and count the Nova requests it causes",
    )
    add(
        "--tracemalloc",
        type=int,
        default=0,
        help="also build a ServerIndex of this many servers in-process under tracemalloc",
    )
    add("--json", type=Path, help="also write the results to this file")
    options = parser.parse_args(argv)
    try:
        options.sizes = [int(s) for s in options.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes: not a comma-separated list of integers: {options.sizes!r}")
    if not options.sizes or min(options.sizes) < 100 or max(options.sizes) > MAX_SIZE:
        parser.error(f"--sizes: every N must be from 100 to {MAX_SIZE:,}")
    if options.duration < 1 or options.sweep_size < 20:
        parser.error("--duration must be at least 1 second and --sweep-size at least 20")
    if not 1 <= options.steady <= 3600:
        parser.error("--steady must be from 1 to 3600 seconds")
    return options


def settings_of(options: argparse.Namespace) -> Settings:
    """Return the run settings of the parsed options."""
    names = [f.name for f in dataclasses.fields(Settings)]
    return Settings(**{name: getattr(options, name) for name in names})


def reproduce(options: argparse.Namespace) -> str:
    """Return the command that repeats this run, every option spelled out."""
    values = dataclasses.asdict(settings_of(options))
    args = [f"--sizes={','.join(map(str, options.sizes))}"]
    args += [f"--{name.replace('_', '-')}={value:g}" for name, value in values.items()]
    if options.tracemalloc:
        args.append(f"--tracemalloc={options.tracemalloc}")
    return "python -m benchmarks.bench " + " ".join(shlex.quote(a) for a in args)


def revision() -> str:
    """Return the commit measured, marked when the work tree differs from it."""
    git = ["git", "-C", str(Path(__file__).resolve().parent.parent)]
    try:
        commit = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "instanceapi"], capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + (" with uncommitted changes under instanceapi/" if dirty else "")


def header(options: argparse.Namespace, load: tuple[float, float, float]) -> list[str]:
    """Return the lines that say where, when and how this run was made."""
    return [
        f"date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; code: {revision()}",
        f"machine: {machine()}; {versions()}; load average at start "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min)",
        f"Gunicorn: {options.workers} workers (gthread, 8 threads, bundled config); "
        f"wrk: 1 thread, {options.connections} connections for /check and the ceiling, "
        f"{options.bulk_connections} for bulk; {options.duration:g}s measured after "
        f"{options.warmup:g}s warm-up",
        f"cloud: {options.latency_ms:g} ms per Nova request + {options.per_server_ms:g} ms "
        f"per server listed; lists of 90% existing / 10% absent UUIDs",
        f"command (from the repository root): {reproduce(options)}",
    ]


def versions() -> str:
    """Return the Gunicorn and Falcon versions installed."""
    return f"Gunicorn {version('gunicorn')}, Falcon {version('falcon')}"


def render(
    options: argparse.Namespace,
    results: list[report.SizeResult],
    traced: TracedIndex | None,
    load: tuple[float, float, float],
) -> tuple[str, bool]:
    """Return the printed report, and whether every target is met."""
    lines = [*header(options, load), "", report.table(results), ""]
    for result in results:
        lines += report.details(result)
    if traced is not None:
        lines.append(
            f"tracemalloc, ServerIndex of {traced.servers:,} built in-process: keeps "
            f"{traced.kept_mb:.1f} MB; {traced.resync_peak_mb:.1f} MB at the peak of a full "
            "resync (old and new tables alive together)"
        )
    lines += ["", "targets:"]
    checked = report.targets(results)
    lines += [f"  [{'met' if met else 'NOT MET'}] {text}" for text, met in checked]
    lines += ["", *header(options, load)[:2], f"command: {reproduce(options)}"]
    return "\n".join(lines), all(met for _, met in checked)


def write_json(path: Path, options: argparse.Namespace, results: list[report.SizeResult]) -> None:
    """Write every measured number to `path`."""
    data = {
        "command": reproduce(options),
        "machine": machine(),
        "versions": versions(),
        "code": revision(),
        "results": [dataclasses.asdict(r) for r in results],
    }
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def measure_all(sizes: list[int], settings: Settings) -> list[report.SizeResult]:
    """Start every cloud up front (they must age), then measure each N in turn."""
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="instanceapi-bench-")))
        prepared = []
        for n in sizes:
            (folder / str(n)).mkdir()
            prepared.append(prepare(n, settings, folder / str(n), stack))
        return [measure_size(p, settings) for p in prepared]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return 0 if every target is met, 1 if not, 2 on usage errors."""
    options = parse_args(argv)
    wrk_path()  # fail before starting anything when wrk is missing
    signal.signal(signal.SIGTERM, _interrupt)  # stop every child, as on Ctrl-C
    load = os.getloadavg()
    traced = None
    if options.tracemalloc:
        progress(f"tracemalloc: a ServerIndex of {options.tracemalloc:,} in-process")
        traced = traced_index(options.tracemalloc)
    try:
        results = measure_all(options.sizes, settings_of(options))
    except KeyboardInterrupt:
        progress("interrupted; every process started has been stopped")
        return 130
    text, ok = render(options, results, traced, load)
    sys.stdout.write(text + "\n")
    if options.json:
        write_json(options.json, options, results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
