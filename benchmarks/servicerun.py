"""One run of the service for one N: memory, sweeps, /check and bulk load."""

from __future__ import annotations

import time

from benchmarks import report
from benchmarks.cloudproc import Control, upstream_delta
from benchmarks.memory import peak_rss_mb, settled_rss_mb
from benchmarks.phases import (
    Ceiling,
    Inputs,
    Settings,
    progress,
    running,
    sweep_cost,
    timed_load,
    wait_for_workers,
)
from benchmarks.sweep import wait_for_index
from benchmarks.workload import Workload
from instanceapi.testing.harness import ServiceProcess

#: While the index must stay empty (the "before" RSS), every Nova answer waits this long.
HOLD_NOVA = 5.0
INDEX_TIMEOUT = 300.0


def load_index(
    service: ServiceProcess,
    workload: Workload,
    control: Control,
    *,
    lists: int,
    workers: int,
) -> tuple[list[int], dict[int, float], float]:
    """Read RSS while Nova is held back, release Nova, wait for every worker's index.

    `lists` is how many listing requests the workers make at least before their
    index is loaded. Return the worker pids, their RSS with the index empty, and
    the seconds the index took to load once Nova was released.
    """
    master = service.process.pid if service.process else 0
    pids = wait_for_workers(master, workers)
    before = settled_rss_mb(pids)
    control.delay_nova(0)
    seconds = wait_for_index(
        service.url,
        workload.probe,
        listed=lambda: control.counts()["nova.list"] >= lists,
        consecutive=10 * workers,
        timeout=INDEX_TIMEOUT,
    )
    return pids, before, seconds


def measure_service(
    env: dict[str, str],
    workload: Workload,
    control: Control,
    settings: Settings,
    inputs: Inputs,
    pages: int,
    ceiling: Ceiling,
) -> report.ServiceRun:
    """Run the service once: memory, both sweeps, /check and bulk load.

    The `ceiling` (already warm) is measured again right after /check, so that
    a change in the machine's load shows as two different ceiling figures.
    """
    control.delay_nova(HOLD_NOVA)
    counts = control.counts()
    started = time.monotonic()
    with running(ServiceProcess(env, workers=settings.workers, ready_path="/healthz")) as service:
        progress("service up with Nova held back: RSS, then the index loads")
        pids, before, load_seconds = load_index(
            service,
            workload,
            control,
            lists=counts["nova.list"] + pages * settings.workers,
            workers=settings.workers,
        )
        after = settled_rss_mb(pids)
        progress(f"index loaded in {load_seconds:.1f}s; first and repeated sweeps")
        first = sweep_cost(service.url, workload, control, settings.sweep_concurrency)
        repeated = sweep_cost(service.url, workload, control, settings.sweep_concurrency)
        progress("wrk: GET /check/{uuid}")
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
        peak = peak_rss_mb(pids)
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
        index_load_seconds=load_seconds,
        rss_before=before,
        rss_after=after,
        rss_peak=peak,
    )
