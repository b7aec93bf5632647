"""``/healthz`` (the process is up) and ``/readyz`` (every target can prove absence)."""

from __future__ import annotations

import falcon

from instanceapi.check.checker import Checker


class HealthResource:
    """``GET /healthz``: the process is up; never touches OpenStack."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer 200."""
        resp.media = {"status": "ok"}

    on_head = on_get


class ReadyResource:
    """``GET /readyz``: every target has a token, Keystone answers, absence is provable,
    and the index (once it exists) is fresh. Reads state only: never waits on OpenStack."""

    def __init__(self, checker: Checker, *, detail: bool = True) -> None:
        self._checker = checker
        #: Name targets, counts and reasons (only to clients who passed access control).
        self._detail = detail

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer 200 when every target is ready, else 503 naming those that are not."""
        targets = []
        for region in self._checker.regions:
            problem = region.readiness()
            targets.append(
                {
                    "target": region.nova.name,
                    "ready": problem is None,
                    "rule": region.visibility.peek().rule.value,
                    "index_servers": len(region.index),
                    "index_age_seconds": region.index.age(),
                    "reason": problem or "ready",
                }
            )
        ok = all(t["ready"] for t in targets)
        excluded = {
            name
            for region in self._checker.regions
            if region.catalog
            for name in region.catalog.coverage.excluded_names()
        }
        resp.status = falcon.HTTP_200 if ok else falcon.HTTP_503
        resp.media = (
            {"ready": ok, "targets": targets, "excluded_regions": sorted(excluded)}
            if self._detail
            else {"ready": ok}
        )

    on_head = on_get
