"""The benchmark's results, its table, and the issue's targets marked met or not met."""

from __future__ import annotations

import math
from dataclasses import dataclass

from benchmarks.load import LoadResult
from benchmarks.workload import ABSENT_FRACTION

THROUGHPUT_TARGET = 0.8  # of the ceiling, at N = 100,000
REPEATED_NOVA_TARGET = 0.01
INDEX_MB_TARGET = 30.0
TARGET_SIZE = 100_000


@dataclass(frozen=True)
class SweepCost:
    """Upstream requests of one sweep (every UUID of the list checked once)."""

    checks: int
    nova: int
    nova_show: int
    nova_list: int
    wrong: int
    sources: dict[str, int]

    @property
    def nova_per_check(self) -> float:
        """Return Nova requests per check."""
        return self.nova / self.checks if self.checks else math.nan


@dataclass(frozen=True)
class ServiceRun:
    """What one run of the service measured."""

    check: LoadResult
    ceiling_after: LoadResult  # measured right after check
    bulk: LoadResult
    first: SweepCost
    repeated: SweepCost
    keystone_tokens: int
    keystone_total: int
    service_seconds: float
    index_load_seconds: float
    rss_before: dict[int, float]  # MB per worker pid, index empty
    rss_after: dict[int, float]  # MB per worker pid, index loaded
    rss_peak: dict[int, float]  # MB per worker pid, VmHWM at the end


@dataclass(frozen=True)
class SizeResult:
    """Everything measured for one N."""

    servers: int
    workers: int
    bulk_batch: int
    token_ttl: float
    run: ServiceRun
    ceiling_before: LoadResult  # measured before the service started

    @property
    def ceilings(self) -> tuple[LoadResult, LoadResult]:
        """Return the ceiling measured before the service and right after /check."""
        return self.ceiling_before, self.run.ceiling_after

    @property
    def ceiling_rate(self) -> float:
        """Return the mean of the two ceiling measurements, in requests/s."""
        return sum(c.rate for c in self.ceilings) / 2

    @property
    def ratio(self) -> float:
        """Return /check throughput as a fraction of the ceiling's."""
        return self.run.check.rate / self.ceiling_rate if self.ceiling_rate else math.nan

    @property
    def cpu_ratio(self) -> float:
        """Return the ceiling's worker CPU per request over the service's (1.0: as cheap)."""
        service = self.run.check.server_cpu_ms_per_request
        ceiling = sum(c.server_cpu_ms_per_request for c in self.ceilings) / 2
        return ceiling / service if service else math.nan

    @property
    def bulk_uuids_per_second(self) -> float:
        """Return UUIDs answered per second by the bulk endpoint."""
        return self.run.bulk.rate * self.bulk_batch

    @property
    def index_mb(self) -> float:
        """Return the largest per-worker RSS growth from empty index to loaded index."""
        run = self.run
        growth = [run.rss_after[p] - run.rss_before[p] for p in run.rss_after]
        return max(growth, default=math.nan)

    @property
    def keystone_allowed(self) -> int:
        """Return the tokens allowed: one per token lifetime per worker (one target)."""
        return self.workers * max(1, math.ceil(self.run.service_seconds / self.token_ttl))


HEADER = (
    "N",
    "req/s",
    "p50 ms",
    "p99 ms",
    "errors",
    "ceiling req/s",
    "ratio",
    "Nova/check 1st",
    "Nova/check rep",
    "Keystone tokens / all",
    "bulk UUIDs/s",
    "index MB",
)


def row(result: SizeResult) -> tuple[str, ...]:
    """Return one table row."""
    return (
        f"{result.servers:,}",
        f"{result.run.check.rate:,.0f}",
        f"{result.run.check.p50_ms:.1f}",
        f"{result.run.check.p99_ms:.1f}",
        f"{result.run.check.errors}",
        f"{result.ceiling_rate:,.0f}",
        f"{result.ratio:.2f}",
        f"{result.run.first.nova_per_check:.3f}",
        f"{result.run.repeated.nova_per_check:.3f}",
        f"{result.run.keystone_tokens} / {result.run.keystone_total}",
        f"{result.bulk_uuids_per_second:,.0f}",
        f"{result.index_mb:.1f}",
    )


def table(results: list[SizeResult]) -> str:
    """Return the results as a Markdown table."""
    rows = [HEADER, *(row(r) for r in results)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"
    return "\n".join([line(HEADER), rule, *(line(r) for r in rows[1:])])


def details(result: SizeResult) -> list[str]:
    """Return the per-N lines behind the table (errors, sources, memory)."""
    run, check = result.run, result.run.check
    rss = ", ".join(
        f"{run.rss_before[p]:.1f} -> {run.rss_after[p]:.1f} (peak {run.rss_peak[p]:.1f})"
        for p in sorted(run.rss_after)
    )
    return [
        f"N={result.servers:,}: index loaded in {run.index_load_seconds:.1f}s after Nova answered",
        f"  /check: {check.requests:,} requests in {check.seconds:.1f}s; unexpected answers "
        f"{check.unexpected}, socket errors {check.socket_errors}, timeouts {check.timeouts}; "
        f"{_cpu(check)}",
        *(
            f"  ceiling {when}: {c.rate:,.0f} req/s, p50 {c.p50_ms:.1f} ms, "
            f"p99 {c.p99_ms:.1f} ms, errors {c.errors}; {_cpu(c)}"
            for when, c in zip(("before", "after"), result.ceilings, strict=True)
        ),
        f"  bulk: {run.bulk.requests} batches of {result.bulk_batch} in {run.bulk.seconds:.1f}s, "
        f"p50 {run.bulk.p50_ms:.0f} ms, errors {run.bulk.errors}; {_cpu(run.bulk)}",
        f"  first sweep: {_sweep(run.first)}",
        f"  repeated sweep: {_sweep(run.repeated)}",
        f"  Keystone: {run.keystone_tokens} token requests, {run.keystone_total} requests in all, "
        f"over {run.service_seconds:.0f}s of service life ({result.workers} workers)",
        f"  worker RSS MB, index empty -> loaded (peak): {rss}",
    ]


def _cpu(load: LoadResult) -> str:
    shares = "/".join(f"{100 * s:.0f}" for s in load.worker_shares)
    retried = f", {load.attempts} runs to spread the connections" if load.attempts > 1 else ""
    return (
        f"workers' CPU {load.server_cpu_s:.1f}s ({load.server_cpu_ms_per_request:.2f} ms/request, "
        f"split {shares}%{retried}), wrk's {load.client_cpu_s:.1f}s"
    )


def _sweep(cost: SweepCost) -> str:
    return (
        f"{cost.checks} checks, {cost.wrong} wrong answers, Nova {cost.nova} "
        f"({cost.nova_show} show, {cost.nova_list} list), sources {cost.sources}"
    )


Target = tuple[str, bool]


def targets(results: list[SizeResult], traced_mb: float | None) -> list[Target]:
    """Return (description, met) for each target of the issue."""
    largest = max(results, key=lambda r: r.servers)
    at = "" if largest.servers == TARGET_SIZE else f" (measured at N={largest.servers:,} only)"
    return [
        _throughput(largest, at),
        *_nova(results),
        *_keystone(results),
        _index(largest, at, traced_mb),
    ]


def _throughput(largest: SizeResult, at: str) -> Target:
    return (
        f"/check throughput at N=100,000 >= {THROUGHPUT_TARGET} x ceiling: {largest.ratio:.2f}{at} "
        f"(worker CPU per request, ceiling / service: {largest.cpu_ratio:.2f})",
        largest.ratio >= THROUGHPUT_TARGET,
    )


def _nova(results: list[SizeResult]) -> list[Target]:
    first_limit = ABSENT_FRACTION + 0.01
    worst_first = max(r.run.first.nova_per_check for r in results)
    worst_repeated = max(r.run.repeated.nova_per_check for r in results)
    return [
        (
            f"Nova requests per check, first sweep <= {first_limit:.2f}: worst {worst_first:.3f}",
            worst_first <= first_limit,
        ),
        (
            f"Nova requests per check, repeated sweep <= {REPEATED_NOVA_TARGET}: "
            f"worst {worst_repeated:.3f}",
            worst_repeated <= REPEATED_NOVA_TARGET,
        ),
    ]


def _keystone(results: list[SizeResult]) -> list[Target]:
    """Tokens, and Keystone requests of any kind, against one per token lifetime per worker."""
    tokens = ", ".join(f"{r.run.keystone_tokens}/{r.keystone_allowed}" for r in results)
    every = ", ".join(
        f"{r.run.keystone_total}/{r.keystone_allowed} in {r.run.service_seconds:.0f}s"
        for r in results
    )
    return [
        (
            f"Keystone tokens <= one per token lifetime per worker: {tokens}",
            all(r.run.keystone_tokens <= r.keystone_allowed for r in results),
        ),
        (
            f"Keystone requests of any kind <= one per token lifetime per worker: {every}",
            all(r.run.keystone_total <= r.keystone_allowed for r in results),
        ),
    ]


def _index(largest: SizeResult, at: str, traced_mb: float | None) -> Target:
    index = largest.index_mb
    traced = "" if traced_mb is None else f", tracemalloc {traced_mb:.1f} MB"
    return (
        f"index of 100,000 <= {INDEX_MB_TARGET:.0f} MB per process: "
        f"RSS growth {index:.1f} MB{at}{traced}",
        index <= INDEX_MB_TARGET and (traced_mb is None or traced_mb <= INDEX_MB_TARGET),
    )
