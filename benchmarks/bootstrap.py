"""Bootstrap: how long the service takes, once Nova answers, until its index is complete.

"Complete" is all of:

* ``GET /readyz`` answers 200;
* the ``instanceapi_index_servers`` gauge (or ``instanceapi_index_size``, as a
  later layout may call it) on ``/metrics`` holds at least the servers the
  cloud has, when the service exports it;
* the cloud has served the listing pages one index load needs, once per process
  that lists (every worker today; one refresher per host once there is one);
* `consecutive` checks in a row, each on a new connection (so spread over the
  workers), are answered from the index with every target's age known.

Every wait is bounded in time.
"""

from __future__ import annotations

import http.client
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.sweep import get_check

GAUGES = ("instanceapi_index_servers", "instanceapi_index_size")
_SAMPLE = re.compile(r"^(\w+)(?:\{[^}]*\})?\s+([0-9.eE+-]+)$")
REQUEST_TIMEOUT = 10.0


@dataclass(frozen=True)
class Boot:
    """Seconds from Nova's release until each sign of a complete index, and the gauge."""

    seconds: float  # every condition met
    readyz_seconds: float | None  # first /readyz 200
    gauge_seconds: float | None  # the gauge first reached the cloud's size (None: no gauge)
    index_servers: int | None  # the gauge at the end (None: not exported)


def get(base_url: str, path: str) -> tuple[int, bytes]:
    """GET `path` on a new connection; status 0 when it failed."""
    parts = urllib.parse.urlsplit(base_url)
    host = parts.hostname or "127.0.0.1"
    connection = http.client.HTTPConnection(host, parts.port, timeout=REQUEST_TIMEOUT)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return 0, b""
    finally:
        connection.close()


def index_servers(base_url: str) -> int | None:
    """Return the largest index-size gauge on /metrics, or None when there is none."""
    status, body = get(base_url, "/metrics")
    if status != 200:
        return None
    values = []
    for line in body.decode("utf-8", errors="replace").splitlines():
        match = _SAMPLE.match(line.strip())
        if match and match.group(1) in GAUGES:
            values.append(int(float(match.group(2))))
    return max(values) if values else None


def wait_until_complete(
    base_url: str,
    probe_uuid: str,
    *,
    servers: int,
    listed: Callable[[], bool],
    consecutive: int,
    timeout: float,
) -> Boot:
    """Wait (at most `timeout` seconds) until the index is complete; see the module."""
    started = time.monotonic()
    deadline = started + timeout
    ready_at = gauge_at = None
    gauge: int | None = None
    streak = 0
    while time.monotonic() < deadline:
        now = time.monotonic() - started
        if ready_at is None and get(base_url, "/readyz")[0] == 200:
            ready_at = now
        gauge = index_servers(base_url)
        if gauge_at is None and gauge is not None and gauge >= servers:
            gauge_at = now
        complete = ready_at is not None and (gauge is None or gauge_at is not None)
        if not (complete and listed()):
            time.sleep(0.2)
            continue
        answer = get_check(base_url, probe_uuid)
        fresh = answer.source == "index" and all(age is not None for age in answer.ages)
        streak = streak + 1 if fresh and answer.ages else 0
        if streak >= consecutive:
            return Boot(time.monotonic() - started, ready_at, gauge_at, gauge)
        if not streak:
            time.sleep(0.1)
    raise RuntimeError(
        f"the index was not complete within {timeout:.0f}s (readyz 200 at {ready_at}, "
        f"gauge {gauge} of {servers}, listed {listed()}, streak {streak}/{consecutive})"
    )
