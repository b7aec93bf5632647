"""Every metric, defined once; rendered from this process or from all Gunicorn workers.

Under Gunicorn, ``PROMETHEUS_MULTIPROC_DIR`` is set (by gunicorn_conf, or by the
systemd unit) before the workers start: each worker writes its values to files
there, and a scrape reads them all through a registry built for that scrape
(prometheus_client's multiprocess recipe). Without it, the app's own registry
is rendered (tests, ``instanceapi check``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.exposition import choose_encoder

__all__ = ["Metrics"]

_UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The service's metrics, registered in `registry` (a fresh one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.checks = Counter(
            "instanceapi_checks_total",
            "UUID checks answered, by HTTP answer and by where the answer came from.",
            ["answer", "source"],
            registry=r,
        )
        self.upstream_requests = Counter(
            "instanceapi_upstream_requests_total",
            "Requests sent to OpenStack, by service, "
            'target and HTTP status ("error": no response).',
            ["service", "target", "status"],
            registry=r,
        )
        self.upstream_seconds = Histogram(
            "instanceapi_upstream_request_duration_seconds",
            "Time OpenStack took to answer.",
            ["service", "target"],
            buckets=_UPSTREAM_BUCKETS,
            registry=r,
        )
        self.token_renewals = Counter(
            "instanceapi_token_renewals_total", "Keystone tokens obtained.", ["target"], registry=r
        )
        self.index_size = Gauge(
            "instanceapi_index_servers",
            "Servers in the index (largest of the live workers).",
            ["target"],
            # live*: a dead worker's value goes with it (gunicorn_conf's child_exit).
            multiprocess_mode="livemax",
            registry=r,
        )
        self.index_success = Gauge(
            "instanceapi_index_last_success_timestamp_seconds",
            "When the index last refreshed "
            "successfully (oldest of the live workers); age = time() - this.",
            ["target"],
            multiprocess_mode="livemin",
            registry=r,
        )
        self.index_complete = Gauge(
            "instanceapi_index_complete",
            "1 when the index's listings cannot have skipped a cell, 0 while Nova lists "
            "servers of an unreachable cell as UNKNOWN (lowest of the live workers).",
            ["target"],
            multiprocess_mode="livemin",
            registry=r,
        )
        self.index_max_age = Gauge(
            "instanceapi_index_max_age_seconds",
            "Oldest the index may be before checks stop trusting it (INSTANCEAPI_INDEX_MAX_AGE).",
            ["target"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.refresh_failures = Counter(
            "instanceapi_index_refresh_failures_total",
            "Index refreshes that failed.",
            ["target"],
            registry=r,
        )
        self.absence_conflicts = Counter(
            "instanceapi_absence_conflicts_total",
            "Cached absences contradicted by a fresh index listing the UUID, and evicted "
            "(a bug or an upstream anomaly: investigate).",
            registry=r,
        )
        # NOTE: "live" modes: a dead worker's value is dropped (child_exit marks it),
        # so one worker that was not ready before a reload cannot pin the service at 0.
        self.target_ready = Gauge(
            "instanceapi_target_ready",
            "1 if the target is ready (as /readyz says), 0 if not (any worker).",
            ["target"],
            multiprocess_mode="livemin",
            registry=r,
        )
        self.target_not_ready = Gauge(
            "instanceapi_target_not_ready",
            "1 for the reason the target is not ready (any worker), 0 for the others.",
            ["target", "reason"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self._check_children: dict[tuple[int, str], Counter] = {}
        self.overloaded = Counter(
            "instanceapi_overloaded_total",
            "Checks refused with 503 because every upstream lookup slot was busy.",
            registry=r,
        )

    def count_check(self, code: int, source: str) -> None:
        """Count one answered check (label children cached: this is the hot path)."""
        key = (code, source)
        if code == 503 and source == "overloaded":
            self.overloaded.inc()
        child = self._check_children.get(key)
        if child is None:
            child = self._check_children[key] = self.checks.labels(str(code), source)
        child.inc()

    def set_readiness(self, target: str, reason: str | None, reasons: Sequence[str]) -> None:
        """Record whether `target` is ready, and if not, which of `reasons` holds."""
        self.target_ready.labels(target).set(0 if reason else 1)
        for each in reasons:
            self.target_not_ready.labels(target, each).set(1 if each == reason else 0)

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """Return every worker's metrics (or this process's) in the format `accept` asks for.

        prometheus_client picks the format: the classic text format (0.0.4)
        unless the scraper asks for OpenMetrics.
        """
        encoder, content_type = choose_encoder(accept)
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return bytes(encoder(registry)), content_type
        return bytes(encoder(self.registry)), content_type
