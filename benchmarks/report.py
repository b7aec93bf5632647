"""The benchmark's results, its table, and the issue's targets marked met or not met."""

from __future__ import annotations

import math
from dataclasses import dataclass

from benchmarks.bootstrap import Boot
from benchmarks.load import LoadResult
from benchmarks.memory import ServiceMemory
from benchmarks.procfs import Memory
from benchmarks.steady import NovaLoad, Restart
from benchmarks.workload import ABSENT_FRACTION

THROUGHPUT_TARGET = 0.9  # of the ceiling, at the largest N
REPEATED_NOVA_TARGET = 0.01
SERVICE_INDEX_MB_TARGET = 64.0  # the whole service, at N = 1,000,000
WORKER_PRIVATE_MB_TARGET = 5.0  # per worker
TARGET_SIZE = 1_000_000
UNFILTERED_PAGE = 1000  # Nova's max_limit: what an unfiltered listing returns at most
MB = 1_000_000


def kib_mb(kib: int) -> float:
    """Return KiB (the kernel's unit) in MB (10**6 bytes)."""
    return kib * 1024 / MB


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
    boot: Boot  # Nova released -> index complete
    bootstrap: NovaLoad  # Nova load over the same time
    steady: NovaLoad  # the idle window after it
    restart: Restart | None  # one worker killed at the end (None: not measured)
    memory_empty: ServiceMemory  # Nova held back, index empty
    memory_loaded: ServiceMemory  # index complete, settled
    memory_peak: ServiceMemory  # after the load runs, with VmHWM


@dataclass(frozen=True)
class SizeResult:
    """Everything measured for one N."""

    servers: int
    workers: int
    bulk_batch: int
    token_ttl: float
    refresh_interval: float
    live_servers: int  # servers a complete index holds at least
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
    def service_index_mb(self) -> float:
        """Return the whole service's memory growth from empty index to complete index."""
        run = self.run
        return kib_mb(run.memory_loaded.service_kib - run.memory_empty.service_kib)

    @property
    def worker_private_mb(self) -> float:
        """Return the largest growth of a worker's private memory (USS), empty to complete."""
        empty, loaded = self.run.memory_empty, self.run.memory_loaded
        growth = [
            kib_mb(m.uss - empty.processes[pid].uss)
            for pid, m in loaded.of("worker").items()
            if pid in empty.processes
        ]
        return max(growth, default=math.nan)

    @property
    def pollers(self) -> int:
        """Return the processes that talk to OpenStack: the workers, and any refresher."""
        loaded = self.run.memory_loaded
        return self.workers + len(loaded.of("refresher")) + len(loaded.of("other"))

    @property
    def keystone_allowed(self) -> int:
        """Return the tokens allowed: one per token lifetime per process (one target), and
        one for the worker that replaces a killed one."""
        lifetimes = max(1, math.ceil(self.run.service_seconds / self.token_ttl))
        return (self.pollers + (self.run.restart is not None)) * lifetimes

    @property
    def startup_allowed(self) -> int:
        """Return the servers one bootstrap listing per host may list: the listing (10 %
        slack for the servers the polls overlapping it read again) and two unfiltered pages
        of up to 1,000 (the visibility probe and the down-cell check)."""
        return math.floor(1.1 * self.live_servers) + 2 * UNFILTERED_PAGE

    @property
    def servers_per_poll(self) -> float:
        """Return the servers one poll round lists in steady state (every poller's pages,
        changes-since and unfiltered, per changes-since page), measured in this run."""
        steady = self.run.steady
        return steady.servers / steady.changes_since if steady.changes_since else 0.0

    @property
    def restart_servers_allowed(self) -> int:
        """Return the servers the regular polls may list while a killed worker is replaced."""
        restart = self.run.restart
        if restart is None:
            return 0
        rounds = self.polls_allowed(restart.load.seconds) * self.polling_processes
        return math.ceil(rounds * self.servers_per_poll)

    @property
    def polling_processes(self) -> int:
        """Return how many processes poll, as the steady state shows (changes-since pages
        per refresh interval; at least 1)."""
        steady = self.run.steady
        per_interval = steady.changes_since * self.refresh_interval / steady.seconds
        return max(1, round(per_interval)) if steady.seconds else 1

    def polls_allowed(self, seconds: float) -> int:
        """Return the listing pages one poller per host may make in `seconds` (one per
        interval; +1 for a window that starts just before a poll)."""
        return math.floor(seconds / self.refresh_interval) + 1


INDEX_HEADER = (
    "N",
    "workers",
    "bootstrap s",
    "start-up Nova pages / servers listed",
    "service memory MB, empty -> complete",
    "worker USS growth MB (max)",
    "steady Nova req/h / servers listed/h",
    "worker kill: pages / servers / GETs",
)
HOT_HEADER = (
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
)


def index_row(result: SizeResult) -> tuple[str, ...]:
    """Return one row of the index and Nova table."""
    run = result.run
    empty, loaded = run.memory_empty.service_kib, run.memory_loaded.service_kib
    restart = run.restart
    killed = (
        "not measured"
        if restart is None
        else f"{restart.load.pages} / {restart.load.servers:,} / {restart.load.shows}"
    )
    return (
        f"{result.servers:,}",
        f"{result.workers}",
        f"{run.boot.seconds:.1f}",
        f"{run.bootstrap.pages:,} / {run.bootstrap.servers:,}",
        f"{kib_mb(empty):.1f} -> {kib_mb(loaded):.1f} (+{result.service_index_mb:.1f})",
        f"{result.worker_private_mb:.1f}",
        f"{run.steady.per_hour(run.steady.total):,.0f} / "
        f"{run.steady.per_hour(run.steady.servers):,.0f}",
        killed,
    )


def hot_row(result: SizeResult) -> tuple[str, ...]:
    """Return one row of the hot-path table."""
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
    )


def markdown(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Return a Markdown table, numbers right-aligned."""
    every = [header, *rows]
    widths = [max(len(r[i]) for r in every) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def table(results: list[SizeResult]) -> str:
    """Return both tables: index and Nova, then the hot path."""
    return "\n\n".join(
        [
            markdown(INDEX_HEADER, [index_row(r) for r in results]),
            markdown(HOT_HEADER, [hot_row(r) for r in results]),
        ]
    )


def details(result: SizeResult) -> list[str]:
    """Return the per-N lines behind the tables."""
    run, check = result.run, result.run.check
    boot = run.boot
    return [
        f"N={result.servers:,} ({result.live_servers:,} live servers), {result.workers} workers:",
        f"  bootstrap (Nova released -> index complete): {boot.seconds:.1f}s; /readyz 200 after "
        f"{_seconds(boot.readyz_seconds)}, index gauge >= {result.live_servers:,} after "
        f"{_seconds(boot.gauge_seconds)} (gauge {boot.index_servers}); Nova meanwhile: "
        f"{_load(run.bootstrap)}",
        f"  steady state, idle, {run.steady.seconds:.0f}s counted at the cloud and scaled to an "
        f"hour: {_load(run.steady)}; per hour: {run.steady.per_hour(run.steady.total):,.0f} "
        f"requests, {run.steady.per_hour(run.steady.pages):,.0f} listing pages, "
        f"{run.steady.per_hour(run.steady.servers):,.0f} servers listed (refresh every "
        f"{result.refresh_interval:g}s; a full resync is in the window only if its interval "
        "is shorter)",
        *_restart(result),
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
        f"over {run.service_seconds:.0f}s of service life ({result.pollers} processes)",
        "  memory MB (RSS / PSS / USS / Pss_Anon / Pss_Shmem), index empty -> complete; peak RSS:",
        *_memory(run),
    ]


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f}s"


def _load(load: NovaLoad) -> str:
    return (
        f"{load.total} Nova requests ({load.pages} listing pages, {load.changes_since} of them "
        f"changes-since, returning {load.servers:,} servers; {load.shows} GET by id) "
        f"in {load.seconds:.1f}s"
    )


def _restart(result: SizeResult) -> list[str]:
    restart = result.run.restart
    if restart is None:
        return ["  worker kill: not measured (--kill-worker=0)"]
    return [
        f"  worker {restart.killed} killed with SIGKILL: replaced by {restart.replacement} after "
        f"{restart.replaced_seconds:.1f}s; until it answered from the index and Nova was quiet: "
        f"{_load(restart.load)}; the regular polls alone may list up to "
        f"{result.restart_servers_allowed:,} servers in that time (at most "
        f"{result.polls_allowed(restart.load.seconds)} poll rounds of "
        f"{result.servers_per_poll:,.0f} servers by each of the {result.polling_processes} "
        "polling processes the steady state shows)"
    ]


def _memory(run: ServiceRun) -> list[str]:
    empty, loaded, peak = run.memory_empty, run.memory_loaded, run.memory_peak
    lines = []
    for pid in sorted(loaded.processes, key=lambda p: (loaded.role(p), p)):
        before = empty.processes.get(pid)
        now = loaded.processes[pid]
        was = "gone" if before is None else _mem(before)
        top = peak.rss_peak.get(pid)
        high = "gone" if top is None else f"{kib_mb(top):.1f}"
        lines.append(f"    {loaded.role(pid)} {pid}: {was} -> {_mem(now)}; peak RSS {high}")
    lines += [
        f"    every process: {_mem(empty.total)} -> {_mem(loaded.total)} "
        "(RSS counts a shared page once per process; PSS divides it among them)",
        f"    runtime directory (tmpfs: the store, absences, metrics): "
        f"{kib_mb(empty.runtime_kib):.1f} -> {kib_mb(loaded.runtime_kib):.1f}",
        f"    the service: {kib_mb(empty.service_kib):.1f} -> {kib_mb(loaded.service_kib):.1f} "
        "(PSS of every process without the tmpfs pages they map, plus every file of the "
        "runtime directory once)",
    ]
    return lines


def _mem(m: Memory) -> str:
    return " / ".join(f"{kib_mb(v):.1f}" for v in (m.rss, m.pss, m.uss, m.pss_anon, m.pss_shmem))


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


def targets(results: list[SizeResult]) -> list[Target]:
    """Return (description, met) for each target of the issue."""
    largest = max(results, key=lambda r: r.servers)
    at = "" if largest.servers == TARGET_SIZE else f" (measured at N={largest.servers:,} only)"
    return [
        *_memory_targets(largest, at),
        *_nova_load(results),
        _throughput(largest, at),
        *_nova(results),
        _keystone(results),
    ]


def _memory_targets(largest: SizeResult, at: str) -> list[Target]:
    index, private = largest.service_index_mb, largest.worker_private_mb
    return [
        (
            f"index <= {SERVICE_INDEX_MB_TARGET:.0f} MB for the whole service at N=1,000,000: "
            f"growth {index:.1f} MB{at}",
            index <= SERVICE_INDEX_MB_TARGET,
        ),
        (
            f"<= {WORKER_PRIVATE_MB_TARGET:.0f} MB private memory per worker: largest USS "
            f"growth {private:.1f} MB{at}",
            private <= WORKER_PRIVATE_MB_TARGET,
        ),
    ]


def _nova_load(results: list[SizeResult]) -> list[Target]:
    """Start-up lists once; one poll per interval per host; a worker kill lists nothing."""
    startup = ", ".join(f"{r.run.bootstrap.servers:,}/{r.startup_allowed:,}" for r in results)
    steady = ", ".join(
        f"{r.run.steady.changes_since}/{r.polls_allowed(r.run.steady.seconds)} in "
        f"{r.run.steady.seconds:.0f}s (other listing pages: "
        f"{r.run.steady.pages - r.run.steady.changes_since})"
        for r in results
    )
    kills = [r for r in results if r.run.restart is not None]
    restart = ", ".join(
        f"{r.run.restart.load.servers:,} servers (the regular polls' share: up to "
        f"{r.restart_servers_allowed:,}), {r.run.restart.load.shows} GETs"
        for r in kills
        if r.run.restart is not None
    )
    return [
        (
            "start-up lists the cloud once (servers listed / allowed: 1.1 x the live servers "
            f"+ 2 unfiltered pages, the visibility probe's and the down-cell check's): {startup}",
            all(r.run.bootstrap.servers <= r.startup_allowed for r in results),
        ),
        (
            "steady state: one changes-since listing per interval per host "
            f"(changes-since pages / allowed): {steady}",
            all(
                r.run.steady.changes_since <= r.polls_allowed(r.run.steady.seconds) for r in results
            ),
        ),
        (
            "a worker killed with SIGKILL causes no listing beyond the regular polls, no GET: "
            f"{restart or 'not measured'}",
            bool(kills)
            and all(
                r.run.restart is not None
                and r.run.restart.load.servers <= r.restart_servers_allowed
                and r.run.restart.load.shows == 0
                for r in kills
            ),
        ),
    ]


def _throughput(largest: SizeResult, at: str) -> Target:
    return (
        f"/check throughput >= {THROUGHPUT_TARGET} x ceiling: {largest.ratio:.2f}{at} "
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


def _keystone(results: list[SizeResult]) -> Target:
    """Tokens against one per token lifetime per process that talks to OpenStack."""
    tokens = ", ".join(f"{r.run.keystone_tokens}/{r.keystone_allowed}" for r in results)
    return (
        f"Keystone tokens <= one per token lifetime per process: {tokens}",
        all(r.run.keystone_tokens <= r.keystone_allowed for r in results),
    )
