"""One run of the service for one N: bootstrap, memory, Nova load, sweeps, load, a worker killed."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import report
from benchmarks.bootstrap import wait_until_complete
from benchmarks.cloudproc import Control, upstream_delta
from benchmarks.memory import read_service, settled_service
from benchmarks.phases import (
    Ceiling,
    Inputs,
    Settings,
    progress,
    running,
    sweep_cost,
    timed_load,
    wait_for_booted,
)
from benchmarks.procfs import children, tmpfs_dir
from benchmarks.steady import index_answer, kill_one_worker, nova_load, steady_state
from benchmarks.workload import Workload
from instanceapi.testing.harness import ServiceProcess

#: While the index must stay empty (the "before" memory), every Nova answer waits this long.
HOLD_NOVA = 5.0
#: Bootstrap time limit: this, plus per listing page and process that lists.
INDEX_TIMEOUT = 300.0
PER_PAGE_TIMEOUT = 0.3


def listers(master: int, workers: set[int]) -> int:
    """Return how many processes list the cloud: one refresher if the master has one, else
    every worker (the master's children that are not workers are taken for a refresher)."""
    return 1 if set(children(master)) - workers else len(workers)


def listed_enough(
    control: Control, first: int, pages: int, count: Callable[[], int]
) -> Callable[[], bool]:
    """Return: has the cloud served `pages` listing requests per lister since `first`?"""
    return lambda: control.counts()["nova.list"] - first >= pages * count()


def measure_service(
    env: dict[str, str],
    workload: Workload,
    control: Control,
    settings: Settings,
    inputs: Inputs,
    cloud: tuple[int, int],
    ceiling: Ceiling,
) -> report.ServiceRun:
    """Run the service once and measure everything of one N.

    `cloud` is (servers a complete index holds at least, listing pages to read
    them). The `ceiling` (already warm) is measured again right after /check.
    """
    runtime = tmpfs_dir("instanceapi-bench-run-")
    try:
        return _measure(env, workload, control, settings, inputs, cloud, ceiling, runtime)
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


def _measure(
    env: dict[str, str],
    workload: Workload,
    control: Control,
    settings: Settings,
    inputs: Inputs,
    cloud: tuple[int, int],
    ceiling: Ceiling,
    runtime: Path,
) -> report.ServiceRun:
    servers, pages = cloud
    control.delay_nova(HOLD_NOVA)
    counts = control.counts()
    started = time.monotonic()
    env = {**env, "INSTANCEAPI_RUNTIME_DIR": str(runtime)}
    with running(ServiceProcess(env, workers=settings.workers, ready_path="/healthz")) as service:
        master = service.process.pid if service.process else 0
        workers = wait_for_booted(service, master, settings.workers)
        progress("service up with Nova held back: memory, then the index loads")
        empty = settled_service(master, workers, set(service.refresher_pids), runtime=runtime)
        released = control.counts()["nova.list"]
        control.delay_nova(0)
        boot_counts, boot_started = control.counts(), time.monotonic()
        listing = listed_enough(control, released, pages, lambda: listers(master, workers))
        boot = wait_until_complete(
            service.url,
            workload.probe,
            servers=servers,
            listed=listing,
            consecutive=10 * settings.workers,
            timeout=INDEX_TIMEOUT + PER_PAGE_TIMEOUT * pages * settings.workers,
        )
        bootstrap = nova_load(boot_counts, control.counts(), time.monotonic() - boot_started)
        loaded = settled_service(master, workers, set(service.refresher_pids), runtime=runtime)
        progress(f"index complete in {boot.seconds:.1f}s; steady state for {settings.steady:g}s")
        steady = steady_state(control, settings.steady)
        progress("first and repeated sweeps")
        first = sweep_cost(service.url, workload, control, settings.sweep_concurrency)
        repeated = sweep_cost(service.url, workload, control, settings.sweep_concurrency)
        progress("wrk: GET /check/{uuid}")
        pids = sorted(workers)
        check = timed_load(
            service.url,
            "check.lua",
            inputs.check,
            settings,
            connections=settings.connections,
            pids=pids,
        )
        ceiling_after = ceiling.measure(warm_up=False)
        progress("wrk: POST /check")
        bulk = timed_load(
            service.url,
            "bulk.lua",
            inputs.bulk,
            settings,
            connections=settings.bulk_connections,
            pids=pids,
        )
        peak = read_service(
            master, workers, set(service.refresher_pids), peak=True, runtime=runtime
        )
        restart = None
        if settings.kill_worker:
            progress("SIGKILL one worker: Nova requests until its replacement answers")
            restart = kill_one_worker(
                master,
                workers,
                control,
                index_answer(service.url, workload.probe),
                timeout=INDEX_TIMEOUT + PER_PAGE_TIMEOUT * pages,
            )
        delta = upstream_delta(counts, control.counts())
    return report.ServiceRun(
        check=check,
        ceiling_after=ceiling_after,
        bulk=bulk,
        first=first,
        repeated=repeated,
        keystone_tokens=delta["keystone.token"],
        keystone_total=delta["keystone.total"],
        service_seconds=time.monotonic() - started,
        boot=boot,
        bootstrap=bootstrap,
        steady=steady,
        restart=restart,
        memory_empty=empty,
        memory_loaded=loaded,
        memory_peak=peak,
    )
