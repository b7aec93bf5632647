"""The slow-client experiment of issue 13: half requests held open, normal checks probed.

Run from the repository root (needs ``nginx`` from Debian)::

    python -m benchmarks.slowclients     # the issue's: 24 held, 8 probes over 80 s
    python -m benchmarks.slowclients --held 200 --probes 4 --interval 2

A simulated cloud (its own process) and the service under Gunicorn (2 workers,
the bundled config: gthread, 8 threads each) are started once, and nginx runs
the shipped site in front of it. For each path in turn -- Gunicorn direct,
then the front -- ``--held`` connections each send half a request line
(``GET /check/``, over TLS for the front) and wait. Every ``--interval``
seconds a normal ``GET /check/<uuid>`` of an existing instance is made on a
new connection with a ``--timeout`` s limit; held connections the server closed
meanwhile are opened again first, so the pressure stays. Prints one Markdown
row per path. Everything runs on 127.0.0.1 and stops at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import ssl
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

from benchmarks.cloudproc import CloudProcess
from benchmarks.phases import progress
from instanceapi.testing.front import NginxFront, nginx_path
from instanceapi.testing.harness import ServiceProcess
from instanceapi.testing.pki import ThrowAwayCA

HALF_REQUEST = b"GET /check/"
PATHS = {"direct": "Gunicorn direct", "front": "nginx front"}


@dataclass
class Outcome:
    """What the probes of one path saw."""

    path: str
    held: int
    answered: int = 0
    failed: list[str] = field(default_factory=list)
    slowest_ms: float = 0.0
    reopened: int = 0


class Holder:
    """Keep `count` connections open, each having sent half a request line."""

    def __init__(self, opener: Callable[[], socket.socket], count: int) -> None:
        self._opener = opener
        self._count = count
        self.connections: list[socket.socket] = []
        self.reopened = 0

    def top_up(self) -> None:
        """Replace connections the server closed, then open up to `count`."""
        alive = [c for c in self.connections if _open(c)]
        for closed in set(self.connections) - set(alive):
            closed.close()
            self.reopened += 1
        self.connections = alive
        while len(self.connections) < self._count:
            connection = self._opener()
            connection.sendall(HALF_REQUEST)
            self.connections.append(connection)

    def close(self) -> None:
        """Close every held connection."""
        for connection in self.connections:
            connection.close()


def _open(connection: socket.socket) -> bool:
    connection.setblocking(False)
    try:
        return connection.recv(1) != b""
    except (ssl.SSLWantReadError, BlockingIOError):
        return True
    except OSError:
        return False
    finally:
        connection.setblocking(True)


@contextlib.contextmanager
def holding(opener: Callable[[], socket.socket], count: int) -> Iterator[Holder]:
    """Hold `count` half requests for the duration of the block."""
    holder = Holder(opener, count)
    try:
        holder.top_up()
        yield holder
    finally:
        holder.close()


def probe_path(
    name: str,
    url: str,
    opener: Callable[[], socket.socket],
    options: argparse.Namespace,
    *,
    verify: str,
) -> Outcome:
    """Hold half requests against one path and probe it with normal checks (`verify`: CA)."""
    outcome = Outcome(name, options.held)
    with holding(opener, options.held) as holder:
        for number in range(options.probes):
            if number:
                time.sleep(options.interval)
            holder.top_up()
            started = time.monotonic()
            try:
                answer = requests.get(url, timeout=options.timeout, verify=verify or True)
                ok = answer.status_code == 200
                result = str(answer.status_code)
            except requests.RequestException as ex:
                ok, result = False, type(ex).__name__
            elapsed = 1000 * (time.monotonic() - started)
            progress(f"{name}: probe {number + 1}/{options.probes}: {result} in {elapsed:.0f} ms")
            outcome.answered += ok
            outcome.slowest_ms = max(outcome.slowest_ms, elapsed)
            if not ok:
                outcome.failed.append(result)
        outcome.reopened = holder.reopened
    return outcome


def plain_opener(port: int) -> Callable[[], socket.socket]:
    """Return a function that opens a TCP connection to 127.0.0.1:`port`."""
    return lambda: socket.create_connection(("127.0.0.1", port), timeout=10)


def tls_opener(port: int, ca: Path) -> Callable[[], socket.socket]:
    """Return a function that opens a verified TLS connection to 127.0.0.1:`port`."""
    context = ssl.create_default_context(cafile=str(ca))

    def open_tls() -> socket.socket:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        return context.wrap_socket(raw, server_hostname="localhost")

    return open_tls


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--held", type=int, default=24, help="half-request connections held open")
    add("--probes", type=int, default=8, help="normal checks per path")
    add("--interval", type=float, default=10.0, help="seconds between probes")
    add("--timeout", type=float, default=5.0, help="a probe's time limit, in seconds")
    add("--paths", default="direct,front", help="which of direct,front to try, in order")
    return parser.parse_args(argv)


def run(options: argparse.Namespace, folder: Path) -> list[Outcome]:
    """Start the cloud, the service and the front; probe each path in turn."""
    with contextlib.ExitStack() as stack:
        cloud = CloudProcess(100, latency_ms=20.0, per_server_ms=0.05)
        stack.callback(cloud.stop)
        info = cloud.start()
        env = {"OS_CLIENT_CONFIG_FILE": info.clouds_yaml, "INSTANCEAPI_CLOUDS": "demo"}
        env["INSTANCEAPI_FORWARDED_ALLOW_IPS"] = "127.0.0.1"
        service = stack.enter_context(ServiceProcess(env, workers=2, ready_path="/readyz"))
        ca = ThrowAwayCA(folder)
        upstream = service.url.removeprefix("http://")
        front = stack.enter_context(NginxFront(upstream, ca.issue_server()))
        check = f"/check/{info.existing[0]}"
        port = int(upstream.rsplit(":", 1)[1])
        outcomes = []
        for key in (k.strip() for k in options.paths.split(",")):
            if key == "direct":
                opener, url, verify = plain_opener(port), service.url + check, ""
            else:
                opener, url, verify = tls_opener(front.port, ca.cert), front.url + check, ca.cert
            outcomes.append(probe_path(PATHS[key], url, opener, options, verify=str(verify)))
    return outcomes


def report(options: argparse.Namespace, outcomes: list[Outcome]) -> str:
    """Return one Markdown row per path, and the command that repeats the run."""
    lines = [
        "| path | half requests held | probes answered 200 | failed probes | slowest probe ms "
        "| held connections re-opened |",
        "|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        failed = ", ".join(o.failed) or "none"
        lines.append(
            f"| {o.path} | {o.held} | {o.answered}/{options.probes} | {failed} "
            f"| {o.slowest_ms:.0f} | {o.reopened} |"
        )
    lines.append("")
    lines.append(
        f"command: `python -m benchmarks.slowclients --held {options.held} "
        f"--probes {options.probes} --interval {options.interval:g} "
        f"--timeout {options.timeout:g} --paths {options.paths}`"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the experiment; 0 when every probe through the front was answered."""
    options = parse_args(argv)
    if nginx_path() is None:
        sys.stderr.write("nginx is not installed: apt-get install -y nginx\n")
        return 2
    with tempfile.TemporaryDirectory(prefix="instanceapi-slow-") as folder:
        outcomes = run(options, Path(folder))
    print(report(options, outcomes))
    front = [o for o in outcomes if o.path == "nginx front"]
    return 0 if all(o.answered == options.probes for o in front) else 1


if __name__ == "__main__":
    sys.exit(main())
