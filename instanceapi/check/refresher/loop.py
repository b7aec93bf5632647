"""Keep every target's index and visibility fresh in a background thread, per worker.

Each Gunicorn worker runs its own refresher (started after the fork, never at
import), so the upstream cost is one bootstrap listing and one ``changes-since``
listing per interval per worker, whatever the request rate. Sharing one index
between workers would save those few calls at the price of a shared store and
its failure modes; with a handful of workers the calls are cheap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from instanceapi.check.region import NOT_READY_REASONS, RegionChecker
from instanceapi.metrics import Metrics
from instanceapi.openstack import UpstreamError

log = logging.getLogger(__name__)


class Refresher:
    """Refresh each target every `interval`; after failures, back off up to `max_backoff`."""

    def __init__(
        self,
        targets: Sequence[RegionChecker],
        *,
        interval: float = 15.0,
        max_backoff: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
        after_refresh: Callable[[], None] = lambda: None,
    ) -> None:
        self._targets = tuple(targets)
        #: Called after a round that refreshed an index (the checker's reconcile).
        self._after_refresh = after_refresh
        self._metrics = metrics
        self._interval = interval
        self._max_backoff = max_backoff
        self._clock = clock
        self._due = dict.fromkeys(range(len(self._targets)), 0.0)
        self._stale: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the background thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, name="instanceapi-refresher", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Ask the thread to finish and wait for it briefly."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def run_once(self) -> float:
        """Refresh every target that is due; return seconds until the next one is."""
        now = self._clock()
        refreshed = False
        for number, target in enumerate(self._targets):
            if self._due[number] <= now:
                self._due[number] = now + self._refresh(target)
                self._report_staleness(number, target)
                refreshed = True
        if refreshed:
            self._after_refresh()
        if self._metrics:
            record_readiness(self._metrics, self._targets)
        return max(0.0, min(self._due.values()) - self._clock())

    def _refresh(self, target: RegionChecker) -> float:
        started = time.perf_counter()
        name = target.nova.name
        try:
            target.check_identity()
            target.refresh_index()
        except Exception as ex:  # no failure of one target may stop the others
            return self._failed(target, ex)
        if self._metrics:
            self._metrics.index_size.labels(name).set(len(target.index))
            self._metrics.index_success.labels(name).set(time.time())
            self._metrics.index_complete.labels(name).set(0 if target.index.incomplete else 1)
        if target.index.incomplete:
            log.warning("%s: index is incomplete: %s", name, target.index.incomplete)
        log.debug(
            "%s: index refreshed: %d servers in %.2fs",
            name,
            len(target.index),
            time.perf_counter() - started,
        )
        return self._interval

    def _failed(self, target: RegionChecker, ex: Exception) -> float:
        """Count and log a failed refresh; return the delay before the next try."""
        if self._metrics:
            self._metrics.refresh_failures.labels(target.nova.name).inc()
        failures = max(1, target.index.failures)
        delay = min(self._interval * 2.0 ** (failures - 1), self._max_backoff)
        if isinstance(ex, UpstreamError):
            reason = ex.reason
        else:  # a bug, or an answer nobody foresaw: loud, but the other targets go on
            log.error("%s: index refresh failed unexpectedly", target.nova.name, exc_info=ex)
            reason = f"unexpected {type(ex).__name__}"
        log.warning(
            "%s: index refresh failed (%d in a row), keeping the last good index, "
            "next try in %.0fs: %s",
            target.nova.name,
            failures,
            delay,
            reason,
        )
        return delay

    def _report_staleness(self, number: int, target: RegionChecker) -> None:
        fresh = target.index_is_fresh()
        if not fresh and number not in self._stale:
            self._stale.add(number)
            log.warning(
                "%s: index is stale (age %s); checks fall back to live lookups",
                target.nova.name,
                _age(target.index.age()),
            )
        elif fresh and number in self._stale:
            self._stale.discard(number)
            log.info("%s: index is fresh again", target.nova.name)

    def _loop(self) -> None:
        delay = 0.0
        while not self._stop.wait(delay):
            try:
                delay = self.run_once()
            except Exception:  # a bug here must not silently end the refreshing
                log.exception("index refresher failed; retrying")
                delay = self._interval


def _age(age: float | None) -> str:
    return "never refreshed" if age is None else f"{age:.0f}s"


def record_readiness(metrics: Metrics, targets: Sequence[RegionChecker]) -> None:
    """Copy every target's readiness (what /readyz says) into the metrics; no I/O."""
    for target in targets:
        metrics.index_max_age.labels(target.nova.name).set(target.max_index_age)
        problem = target.not_ready()
        metrics.set_readiness(target.nova.name, problem[0] if problem else None, NOT_READY_REASONS)
