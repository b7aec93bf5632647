"""Nova load in steady state, and what killing one worker costs Nova.

Both count at the simulated cloud (``/_sim/counts``): listing pages
(``nova.list``), servers those pages returned (``nova.servers_listed``) and
``GET /servers/{id}`` (``nova.show``), between two readings.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.cloudproc import Control, upstream_delta
from benchmarks.procfs import children
from benchmarks.sweep import get_check


@dataclass(frozen=True)
class NovaLoad:
    """Nova requests over a window of `seconds`."""

    seconds: float
    pages: int  # listing requests
    changes_since: int  # of which with a changes-since parameter
    servers: int  # servers the listings returned
    shows: int  # GET /servers/{id}
    total: int  # every Nova request

    def per_hour(self, count: int) -> float:
        """Return `count` scaled from this window to an hour."""
        return count * 3600 / self.seconds if self.seconds else 0.0


def nova_load(before: Counter[str], after: Counter[str], seconds: float) -> NovaLoad:
    """Return the Nova load between two counter readings `seconds` apart."""
    delta = upstream_delta(before, after)
    return NovaLoad(
        seconds,
        delta["nova.list"],
        delta["nova.list_changes_since"],
        delta["nova.servers_listed"],
        delta["nova.show"],
        delta["nova.total"],
    )


def steady_state(control: Control, seconds: float) -> NovaLoad:
    """Count what the idle service asks Nova for `seconds` (no checks meanwhile)."""
    before, started = control.counts(), time.monotonic()
    time.sleep(seconds)
    return nova_load(before, control.counts(), time.monotonic() - started)


@dataclass(frozen=True)
class Restart:
    """One worker killed with SIGKILL: its replacement, and the Nova load meanwhile."""

    killed: int
    replacement: int
    replaced_seconds: float  # until Gunicorn had forked the replacement
    load: NovaLoad  # from the kill until the replacement answered and Nova was quiet


def kill_one_worker(
    master: int,
    workers: set[int],
    control: Control,
    answers_from_index: Callable[[], bool],
    *,
    quiet: float = 3.0,
    timeout: float = 300.0,
) -> Restart:
    """SIGKILL one worker; count Nova requests until the service is whole and quiet again.

    "Whole and quiet": Gunicorn has forked a replacement, `answers_from_index`
    (one check on a new connection) has held 10 times per worker in a row, and
    the cloud has seen no listing page and no GET for `quiet` seconds.
    """
    victim = max(workers)
    known = set(children(master))
    before, started = control.counts(), time.monotonic()
    os.kill(victim, signal.SIGKILL)
    deadline = started + timeout
    replacement = 0
    while not replacement and time.monotonic() < deadline:
        fresh = set(children(master)) - known
        replacement = min(fresh) if fresh else 0
        time.sleep(0.05)
    if not replacement:
        raise RuntimeError(f"Gunicorn did not replace worker {victim} within {timeout:.0f}s")
    replaced = time.monotonic() - started
    streak, last, quiet_since = 0, _busy(control.counts()), time.monotonic()
    while time.monotonic() < deadline:
        streak = streak + 1 if answers_from_index() else 0
        busy = _busy(control.counts())
        if busy != last:
            last, quiet_since = busy, time.monotonic()
        if streak >= 10 * len(workers) and time.monotonic() - quiet_since >= quiet:
            load = nova_load(before, control.counts(), time.monotonic() - started)
            return Restart(victim, replacement, replaced, load)
        time.sleep(0.1)
    raise RuntimeError(f"the service did not settle within {timeout:.0f}s of killing {victim}")


def _busy(counts: Counter[str]) -> tuple[int, int]:
    return counts["nova.list"], counts["nova.show"]


def index_answer(base_url: str, probe_uuid: str) -> Callable[[], bool]:
    """Return a callable: one check of `probe_uuid` on a new connection, from a fresh index?"""

    def ask() -> bool:
        answer = get_check(base_url, probe_uuid)
        return answer.source == "index" and bool(answer.ages) and None not in answer.ages

    return ask
