"""One simulated cloud per N, started up front so that its servers are old when measured.

The service's incremental refresh asks Nova for ``changes-since`` its last
listing minus a clock-skew margin (``instanceapi.check.index.SKEW_MARGIN``, 60 s).
Servers created within that margin are listed again by every refresh, so a
service started right after ``populate`` would re-read all N servers every 15 s,
which is not what a cloud in steady state looks like. Every cloud is therefore
populated first, and each service starts only once its cloud's last change is
older than the margin; the ceiling is measured while the first cloud ages.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import report
from benchmarks.cloudproc import CloudInfo, CloudProcess, Control
from benchmarks.phases import Ceiling, Inputs, Settings, progress, write_inputs
from benchmarks.servicerun import measure_service
from benchmarks.workload import Workload, make_workload
from instanceapi.check.index import SKEW_MARGIN

AGE = SKEW_MARGIN + 5.0  # seconds between a cloud's last change and the service's start
REFRESH_INTERVAL = 15.0  # the service's changes-since poll interval (its default, set explicitly)
TOKEN_TTL = 3600.0  # the simulated Keystone's default token lifetime
PAGE = 1000  # the service's listing page size


@dataclass(frozen=True)
class Prepared:
    """A started, populated cloud for one N, its UUID lists, and when it is old enough."""

    servers: int
    cloud: CloudProcess
    info: CloudInfo
    workload: Workload
    inputs: Inputs
    aged_at: float  # time.monotonic() after which the service may start

    @property
    def env(self) -> dict[str, str]:
        """Return the service's environment for this cloud."""
        return {
            "OS_CLIENT_CONFIG_FILE": self.info.clouds_yaml,
            "INSTANCEAPI_CLOUDS": "demo",
            # The run measures capacity, not the upstream budget (README, Security):
            # fresh absent UUIDs at thousands per second would be refused (503).
            "INSTANCEAPI_UPSTREAM_RATE": "10000",
            "INSTANCEAPI_UPSTREAM_BURST": "100000",
            "INSTANCEAPI_MAX_UPSTREAM_LOOKUPS": "32",
            "INSTANCEAPI_BULK_MAX_LIVE": "1000",
            "INSTANCEAPI_REFRESH_INTERVAL": f"{REFRESH_INTERVAL:g}",
        }

    @property
    def live_servers(self) -> int:
        """Return the servers a complete index holds at least: the populated ones not deleted
        (the demo mix, a few more, is left out of the count)."""
        return self.info.populated_total - len(self.workload.absent) // 2

    @property
    def pages(self) -> int:
        """Return the listings one index load makes at least: the probe, then the full pages."""
        return 1 + self.live_servers // PAGE


def prepare(
    servers: int, settings: Settings, folder: Path, stack: contextlib.ExitStack
) -> Prepared:
    """Start the cloud for `servers` (stopped by `stack`), delete some, write the lists."""
    progress(f"N={servers:,}: starting and populating the simulated cloud")
    cloud = CloudProcess(
        servers, latency_ms=settings.latency_ms, per_server_ms=settings.per_server_ms
    )
    stack.callback(cloud.stop)
    info = cloud.start()
    workload = make_workload(
        info.populated,
        min(settings.sweep_size, servers),
        Control(info.control).delete_server,
        seed=settings.seed,
    )
    inputs = write_inputs(workload, folder)
    return Prepared(servers, cloud, info, workload, inputs, time.monotonic() + AGE)


def wait_until_aged(prepared: Prepared) -> None:
    """Sleep until the cloud's last change is older than the service's skew margin."""
    remaining = prepared.aged_at - time.monotonic()
    if remaining > 0:
        progress(f"waiting {remaining:.0f}s until the servers are older than {SKEW_MARGIN:g}s")
        time.sleep(remaining)


def measure_size(prepared: Prepared, settings: Settings) -> report.SizeResult:
    """Measure the ceiling, then the service, for one prepared N; stop its cloud after."""
    progress(f"N={prepared.servers:,}: the ceiling")
    try:
        with Ceiling(prepared.env, prepared.inputs, settings) as ceiling:
            ceiling_before = ceiling.measure(warm_up=True)
            wait_until_aged(prepared)
            progress(f"N={prepared.servers:,}: the service")
            run = measure_service(
                prepared.env,
                prepared.workload,
                Control(prepared.info.control),
                settings,
                prepared.inputs,
                (prepared.live_servers, prepared.pages),
                ceiling,
            )
    finally:
        prepared.cloud.stop()
    return report.SizeResult(
        servers=prepared.servers,
        workers=settings.workers,
        bulk_batch=int(prepared.inputs.bulk[1]),
        token_ttl=TOKEN_TTL,
        refresh_interval=REFRESH_INTERVAL,
        live_servers=prepared.live_servers,
        run=run,
        ceiling_before=ceiling_before,
    )
