"""Drive load with wrk (the Debian package) and read the result its Lua scripts print."""

from __future__ import annotations

import dataclasses
import json
import resource
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent / "wrk"
MARKER = "WRK_RESULT "
#: A request that takes longer than this counts as a timeout error.
REQUEST_TIMEOUT = "10s"


@dataclass(frozen=True)
class LoadResult:
    """One wrk run: completed requests, latency percentiles and every kind of error."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    unexpected: int  # answers with a status (or body) other than the expected one
    socket_errors: int  # connect, read and write errors
    timeouts: int
    client_cpu_s: float = 0.0  # CPU time wrk used
    server_cpu_s: float = 0.0  # CPU time the Gunicorn workers used
    worker_shares: tuple[float, ...] = ()  # each worker's part of server_cpu_s
    attempts: int = 1  # runs made to get one whose connections reached every worker

    @property
    def server_cpu_ms_per_request(self) -> float:
        """Return the workers' CPU time per completed request, in ms."""
        return 1000 * self.server_cpu_s / self.requests if self.requests else 0.0

    @property
    def rate(self) -> float:
        """Return completed requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        """Return every failed request: wrong answers, socket errors and timeouts."""
        return self.unexpected + self.socket_errors + self.timeouts


def wrk_path() -> str:
    """Return the wrk executable, or explain how to install it."""
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk")
    return found


def run_wrk(
    url: str, script: str, args: list[str], *, duration: float, connections: int
) -> LoadResult:
    """Run wrk with one of our Lua scripts for `duration` seconds and parse its result."""
    command = [
        wrk_path(),
        "--threads=1",  # one load thread: the service needs the other cores
        f"--connections={connections}",
        f"--duration={max(1, round(duration))}s",
        f"--timeout={REQUEST_TIMEOUT}",
        "--latency",
        f"--script={SCRIPTS / script}",
        url,
        "--",
        *args,
    ]
    used = _children_cpu()
    finished = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + 60, check=False
    )
    result = parse_result(finished.stdout, finished.stderr)
    return dataclasses.replace(result, client_cpu_s=_children_cpu() - used)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk is the only child reaped here
    return usage.ru_utime + usage.ru_stime


def parse_result(stdout: str, stderr: str = "") -> LoadResult:
    """Return the LoadResult of the WRK_RESULT line in wrk's output."""
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            data = json.loads(line[len(MARKER) :])
            return LoadResult(
                requests=data["requests"],
                seconds=data["duration_us"] / 1e6,
                p50_ms=data["p50_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                unexpected=data["unexpected"],
                socket_errors=data["connect"] + data["read"] + data["write"],
                timeouts=data["timeout"],
            )
    raise RuntimeError(f"wrk printed no result:\n{stdout}\n{stderr}")


def write_check_list(path: Path, pairs: list[tuple[str, int]]) -> Path:
    """Write the "uuid expected-status" list that check.lua reads, in order; return `path`."""
    lines = [f"{uuid} {status}" for uuid, status in pairs]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_bulk_bodies(path: Path, batches: list[list[str]]) -> Path:
    """Write one JSON ``{"uuids": [...]}`` body per line for bulk.lua; return `path`."""
    lines = [json.dumps({"uuids": batch}, separators=(",", ":")) for batch in batches]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
