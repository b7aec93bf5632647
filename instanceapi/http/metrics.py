"""``/metrics``: Prometheus text format, every worker's values."""

from __future__ import annotations

import falcon

from instanceapi.check.checker import Checker
from instanceapi.check.refresher.loop import record_readiness
from instanceapi.metrics import Metrics


class MetricsResource:
    """``GET /metrics``: Prometheus text format, every worker's values."""

    def __init__(self, metrics: Metrics, checker: Checker | None = None) -> None:
        self._metrics = metrics
        self._checker = checker

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Render the metrics, with this worker's readiness as of now."""
        if self._checker is not None:
            record_readiness(self._metrics, self._checker.regions)
        resp.data, resp.content_type = self._metrics.render(req.get_header("Accept") or "")
