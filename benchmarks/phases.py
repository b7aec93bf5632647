"""Building blocks of a measurement: settings, wrk inputs and runs, sweeps, the ceiling."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from benchmarks import report
from benchmarks.cloudproc import Control, upstream_delta
from benchmarks.load import LoadResult, run_wrk, write_bulk_bodies, write_check_list
from benchmarks.memory import booted_workers
from benchmarks.procfs import children, cpu_seconds
from benchmarks.sweep import sweep
from benchmarks.workload import Workload, bulk_batches
from instanceapi.serve.__main__ import MODULE_ENV as REFRESHER_ENV
from instanceapi.testing.harness import ServiceProcess

REPO = Path(__file__).resolve().parent.parent
CEILING_APP = "benchmarks.ceiling:create_app()"
ATTEMPTS = 3
#: A run is balanced when every worker did at least this part of its fair share.
BALANCED = 0.5


@dataclass(frozen=True)
class Settings:
    """What a run varies (from the command line)."""

    duration: float
    warmup: float
    connections: int
    bulk_connections: int
    workers: int
    sweep_size: int
    sweep_concurrency: int
    latency_ms: float
    per_server_ms: float
    seed: int
    steady: float  # seconds of the steady-state window
    kill_worker: int  # 1: SIGKILL one worker at the end and count what it costs Nova


@dataclass(frozen=True)
class Inputs:
    """The wrk input files of one N."""

    check: list[str]  # check.lua arguments: the sweep list with expected statuses
    ceiling: list[str]  # the same UUIDs, all expected 200
    bulk: list[str]  # bulk.lua arguments: bodies file, batch size, absent per batch


@contextlib.contextmanager
def running(service: ServiceProcess) -> Iterator[ServiceProcess]:
    """Start `service` and stop it afterwards, also when it fails to start."""
    try:
        service.start()
        yield service
    finally:
        service.stop()


def progress(message: str) -> None:
    """Say what the benchmark is doing (stderr: stdout holds only the report)."""
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def write_inputs(workload: Workload, folder: Path) -> Inputs:
    """Write the wrk input files for `workload` into `folder`."""
    batches, absent = bulk_batches(workload)
    check = write_check_list(folder / "check.txt", workload.pairs)
    ceiling = write_check_list(folder / "ceiling.txt", [(u, 200) for u, _ in workload.pairs])
    bodies = write_bulk_bodies(folder / "bulk.txt", batches)
    return Inputs([str(check)], [str(ceiling)], [str(bodies), str(len(batches[0])), str(absent)])


def timed_load(
    url: str,
    script: str,
    args: list[str],
    settings: Settings,
    *,
    connections: int,
    pids: list[int],
    warm_up: bool = True,
) -> LoadResult:
    """Run wrk for the warm-up (discarded, if `warm_up`), then for the measured duration.

    wrk keeps its connections open and Gunicorn never moves a connection from
    the worker that accepted it; when one worker accepted (nearly) all of them,
    the run measured one worker, not the service. Such a run is repeated (at
    most ATTEMPTS in all); the result says how many runs it took, and carries
    the CPU time each worker used during it.
    """
    if warm_up and settings.warmup >= 1:
        run_wrk(url, script, args, duration=settings.warmup, connections=connections)
    for attempt in range(1, ATTEMPTS + 1):
        used = [cpu_seconds([pid]) for pid in pids]
        result = run_wrk(url, script, args, duration=settings.duration, connections=connections)
        spent = [cpu_seconds([pid]) - before for pid, before in zip(pids, used, strict=True)]
        shares = tuple(s / sum(spent) if sum(spent) else 0.0 for s in spent)
        if min(shares) >= BALANCED / len(pids):
            break
        split = "/".join(f"{100 * s:.0f}" for s in shares)
        progress(f"wrk run {attempt}: workers' CPU split {split}%: connections piled up; again")
    return dataclasses.replace(
        result, server_cpu_s=sum(spent), worker_shares=shares, attempts=attempt
    )


def sweep_cost(
    url: str, workload: Workload, control: Control, concurrency: int
) -> report.SweepCost:
    """Sweep the list once; return its checks and the upstream requests they caused."""
    before = control.counts()
    result = sweep(url, workload.pairs, concurrency=concurrency)
    delta = upstream_delta(before, control.counts())
    return report.SweepCost(
        checks=result.checks,
        nova=delta["nova.total"],
        nova_show=delta["nova.show"],
        nova_list=delta["nova.list"],
        wrong=result.wrong,
        sources=dict(result.sources),
    )


def wait_for_booted(
    service: ServiceProcess, master: int, workers: int, timeout: float = 30.0
) -> set[int]:
    """Return the worker pids once all `workers` run (bounded in time).

    Workers are the master's children that Gunicorn's log says it booted as
    workers: any other child (a refresher) is not one.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = booted_workers(service.log_text) & set(children(master))
        if len(pids) >= workers:
            return pids
        time.sleep(0.1)
    raise RuntimeError(f"Gunicorn did not start {workers} workers in {timeout:.0f}s")


class Ceiling:
    """The bare Falcon route under the service's Gunicorn settings, measured on demand."""

    def __init__(self, env: dict[str, str], inputs: Inputs, settings: Settings) -> None:
        args = ("--chdir", str(REPO), CEILING_APP)
        # Plain Gunicorn: no refresher child listing the cloud beside the bare route.
        bare = {**env, REFRESHER_ENV: ""}
        self.process = ServiceProcess(bare, workers=settings.workers, extra_args=args)
        self._inputs = inputs
        self._settings = settings
        self._pids: list[int] = []

    def __enter__(self) -> Ceiling:
        try:
            self.process.start()
            master = self.process.process.pid if self.process.process else 0
            self._pids = sorted(wait_for_booted(self.process, master, self._settings.workers))
        except BaseException:
            self.process.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.process.stop()

    def measure(self, *, warm_up: bool) -> LoadResult:
        """Load the ceiling with the /check list for the measured duration."""
        progress("wrk: the ceiling")
        return timed_load(
            self.process.url,
            "check.lua",
            self._inputs.ceiling,
            self._settings,
            connections=self._settings.connections,
            pids=self._pids,
            warm_up=warm_up,
        )
