"""The refresher's memory and time for the bootstrap listing and the paced resync, at N servers.

    python -m benchmarks.resync --servers 1000000

The simulated cloud runs in its own process (127.0.0.1, free ports); this
process is the refresher's index, so its memory is what the refresher adds.
The baseline, measured in the same run, is the bootstrap listing: the resync
must cost far less private memory than a second listing. The walk runs
without pauses (the service rests INSTANCEAPI_RESYNC_PAUSE after each 1,000).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

SETTLE = 65.0  # populated servers must be older than the 60 s skew margin of the catch-up


def status_mb(field: str) -> float:
    """Return a /proc/self/status figure (kB) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def peak_anon_during(work: Callable[[], object]) -> tuple[object, float, float]:
    """Run `work`; return its result, its seconds, and the peak private (anonymous) MB meanwhile."""
    peak, done = [status_mb("RssAnon")], threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], status_mb("RssAnon"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    try:
        result = work()
    finally:
        done.set()
        sampler.join()
    return result, time.monotonic() - started, peak[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--servers", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="instanceapi-resync-") as tmp:
        report = run(Path(tmp), args.servers)
    print(json.dumps(report, indent=2))
    memory = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    print(f"machine: {os.cpu_count()} cores, {memory:.1f} GiB RAM, Python {sys.version.split()[0]}")
    print(f"command: python -m benchmarks.resync --servers {args.servers}")


def run(workdir: Path, servers: int) -> dict[str, object]:
    """Start the simulated cloud with `servers`, measure, stop it."""
    os.chmod(workdir, 0o700)
    cloud = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "instanceapi.testing",
            f"--servers={servers}",
            f"--clouds-yaml={workdir / 'clouds.yaml'}",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        if cloud.stdout is None:
            raise RuntimeError("the simulated cloud has no output")
        cloud.stdout.readline()  # the announcement: the cloud is up (its ids are not kept)
        return measure(workdir)
    finally:
        cloud.terminate()
        cloud.wait(30)


def measure(workdir: Path) -> dict[str, object]:
    """Bootstrap, let the servers age past the skew margin, resync; return the figures."""
    os.environ.update(
        {
            "OS_CLIENT_CONFIG_FILE": str(workdir / "clouds.yaml"),
            "INSTANCEAPI_CLOUDS": "demo",
            "INSTANCEAPI_RUNTIME_DIR": str(workdir),
            "INSTANCEAPI_TIMEOUT": "120",
        }
    )
    from instanceapi.check.refresher.__main__ import build_regions
    from instanceapi.config import Settings
    from instanceapi.metrics import Metrics

    layout, published = build_regions(Settings.from_env(os.environ), Metrics())
    layout.create()
    index = published[0].index
    anon_start = status_mb("RssAnon")
    _, bootstrap_s, bootstrap_peak = peak_anon_during(lambda: index.refresh(full_since=None))
    time.sleep(SETTLE)
    anon_before = status_mb("RssAnon")
    completed, resync_s, resync_peak = peak_anon_during(
        lambda: index.resync(pause=0.0, stopping=threading.Event())
    )
    return {
        "servers_indexed": len(index),
        "snapshot_MB": round(os.path.getsize(index.snapshot_path) / 1e6, 2),
        "bootstrap_s": round(bootstrap_s, 1),
        "bootstrap_private_MB_peak_growth (baseline)": round(bootstrap_peak - anon_start, 1),
        "resync_completed": completed,
        "resync_s_without_pauses": round(resync_s, 1),
        "resync_private_MB_peak_growth": round(resync_peak - anon_before, 1),
        "refresher_private_MB_after": round(status_mb("RssAnon"), 1),
    }


if __name__ == "__main__":
    main()
