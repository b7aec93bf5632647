"""``GET /check`` throughput through the nginx front (deploy/nginx/) against Gunicorn direct.

Run from the repository root (needs ``wrk`` and ``nginx`` from Debian)::

    python -m benchmarks.front                       # 1,000 servers, 3 rounds of 5 s each way
    python -m benchmarks.front --rounds 1 --duration 3

One simulated cloud (its own process), one service under Gunicorn with the
bundled config, and nginx running the shipped site file on TLS with a
throw-away CA, all on 127.0.0.1. Once every worker answers from its index,
wrk (one thread, keep-alive) runs ``check.lua`` over the same UUID list
alternately against Gunicorn (plain HTTP) and through the front (HTTPS), so
both see the same machine load. Prints one Markdown table; the ratio is the
front's rate over the direct rate. Every process is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.cloudproc import CloudProcess, Control
from benchmarks.load import LoadResult, run_wrk, wrk_path
from benchmarks.phases import progress, write_inputs
from benchmarks.procfs import cpu_seconds, worker_pids
from benchmarks.sweep import wait_for_index
from benchmarks.workload import make_workload
from instanceapi.testing.front import NginxFront, nginx_path
from instanceapi.testing.harness import ServiceProcess
from instanceapi.testing.pki import ThrowAwayCA


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--servers", type=int, default=1000, help="instances in the simulated cloud")
    add("--duration", type=float, default=5.0, help="seconds of each measured wrk run")
    add("--warmup", type=float, default=1.0, help="seconds of wrk before each measured run")
    add("--rounds", type=int, default=3, help="direct/front pairs to measure")
    add("--connections", type=int, default=64, help="wrk connections")
    add("--workers", type=int, default=os.cpu_count() or 2, help="Gunicorn workers")
    add("--nginx-workers", type=int, default=1, help="nginx worker processes")
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Run:
    """One measured wrk run and the CPU the servers spent on it."""

    load: LoadResult
    gunicorn_ms: float  # Gunicorn workers' CPU per request
    nginx_ms: float  # nginx workers' CPU per request
    shares: tuple[float, ...]  # each Gunicorn worker's part of their CPU


def measure(options: argparse.Namespace, folder: Path) -> dict[str, list[Run]]:
    """Start everything, then alternate direct and front wrk runs."""
    results: dict[str, list[Run]] = {"direct": [], "front": []}
    with contextlib.ExitStack() as stack:
        progress(f"starting the simulated cloud with {options.servers:,} servers")
        cloud = CloudProcess(options.servers, latency_ms=20.0, per_server_ms=0.05)
        stack.callback(cloud.stop)
        info = cloud.start()
        control = Control(info.control)
        workload = make_workload(info.populated, min(2000, options.servers), control.delete_server)
        inputs = write_inputs(workload, folder)
        env = {
            "OS_CLIENT_CONFIG_FILE": info.clouds_yaml,
            "INSTANCEAPI_CLOUDS": "demo",
            "INSTANCEAPI_FORWARDED_ALLOW_IPS": "127.0.0.1",
        }
        service = stack.enter_context(ServiceProcess(env, workers=options.workers))
        progress("service up; waiting until every worker answers from its index")
        wait_for_index(
            service.url,
            workload.probe,
            listed=lambda: True,
            consecutive=10 * options.workers,
            timeout=300,
        )
        ca = ThrowAwayCA(folder)
        upstream = service.url.removeprefix("http://")
        front = stack.enter_context(
            NginxFront(upstream, ca.issue_server(), workers=options.nginx_workers)
        )
        urls = {"direct": service.url, "front": front.url}
        pids = (_children(service.process), _children(front.process))
        for round_ in range(1, options.rounds + 1):
            for name, url in urls.items():
                progress(f"round {round_}/{options.rounds}: {name} ({url})")
                results[name].append(_run(url, inputs.check, options, pids))
    return results


def _children(process: subprocess.Popen[bytes] | None) -> list[int]:
    return worker_pids(process.pid) if process is not None else []


def _run(
    url: str, check: list[str], options: argparse.Namespace, pids: tuple[list[int], list[int]]
) -> Run:
    connections = options.connections
    if options.warmup > 0:
        run_wrk(url, "check.lua", check, duration=options.warmup, connections=connections)
    gunicorn, nginx = pids
    before = [cpu_seconds([pid]) for pid in gunicorn], cpu_seconds(nginx)
    load = run_wrk(url, "check.lua", check, duration=options.duration, connections=connections)
    spent = [cpu_seconds([pid]) - start for pid, start in zip(gunicorn, before[0], strict=True)]
    per_request = 1000 / load.requests if load.requests else 0.0
    total = sum(spent)
    return Run(
        load,
        gunicorn_ms=total * per_request,
        nginx_ms=(cpu_seconds(nginx) - before[1]) * per_request,
        shares=tuple(part / total if total else 0.0 for part in spent),
    )


def report(options: argparse.Namespace, results: dict[str, list[Run]]) -> str:
    """Return the Markdown table of both paths, and the command that repeats the run."""
    lines = [
        "| path | requests/s (median) | each round | p50 ms | p99 ms | errors "
        "| CPU ms/request: Gunicorn + nginx | Gunicorn worker shares |",
        "|---|---|---|---|---|---|---|---|",
    ]
    medians = {}
    for name, runs in results.items():
        medians[name] = statistics.median(r.load.rate for r in runs)
        each = " / ".join(f"{r.load.rate:,.0f}" for r in runs)
        p50 = statistics.median(r.load.p50_ms for r in runs)
        p99 = statistics.median(r.load.p99_ms for r in runs)
        errors = sum(r.load.errors for r in runs)
        gunicorn = statistics.median(r.gunicorn_ms for r in runs)
        nginx = statistics.median(r.nginx_ms for r in runs)
        shares = " / ".join(":".join(f"{share:.2f}" for share in r.shares) for r in runs)
        label = "Gunicorn direct (HTTP)" if name == "direct" else "nginx front (HTTPS)"
        lines.append(
            f"| {label} | {medians[name]:,.0f} | {each} | {p50:.1f} | {p99:.1f} | {errors} "
            f"| {gunicorn:.2f} + {nginx:.2f} | {shares} |"
        )
    ratio = medians["front"] / medians["direct"] if medians["direct"] else 0.0
    lines.append("")
    lines.append(f"front / direct: {ratio:.2f}")
    command = (
        f"python -m benchmarks.front --servers {options.servers} --duration {options.duration:g} "
        f"--warmup {options.warmup:g} --rounds {options.rounds} "
        f"--connections {options.connections} --workers {options.workers} "
        f"--nginx-workers {options.nginx_workers}"
    )
    lines.append(f"command: `{command}`")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure and print the report; 0 when every answer was the expected one."""
    options = parse_args(argv)
    wrk_path()
    if nginx_path() is None:
        sys.stderr.write("nginx is not installed: apt-get install -y nginx\n")
        return 2
    with tempfile.TemporaryDirectory(prefix="instanceapi-front-bench-") as folder:
        results = measure(options, Path(folder))
    print(report(options, results))
    return 0 if all(r.load.errors == 0 for runs in results.values() for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
