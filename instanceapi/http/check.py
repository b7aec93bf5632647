"""``/check/<uuid>`` and the ``/check`` paths around it: thin adapters to the checker."""

from __future__ import annotations

import logging
import time

import falcon

from instanceapi.check.checker import Checker, Overloaded
from instanceapi.http.bulk import BulkCheckResource, wants_fresh
from instanceapi.http.middleware import upstream_seconds
from instanceapi.http.render import code_of, render_check
from instanceapi.metrics import Metrics
from instanceapi.uuids import InvalidUUID, parse_uuid
from instanceapi.verdict import Verdict

log = logging.getLogger(__name__)

#: Sources answered without asking OpenStack: logged at DEBUG.
_FROM_MEMORY = frozenset({"index", "absent-cache"})


class CheckResource:
    """``GET/HEAD /check/{uuid}``: does this instance exist?"""

    def __init__(self, checker: Checker, metrics: Metrics) -> None:
        self._checker = checker
        self._metrics = metrics

    def on_get(self, req: falcon.Request, resp: falcon.Response, raw: str) -> None:
        """Answer 200/404/500 for a UUID, 400 for anything else."""
        try:
            canonical = parse_uuid(raw)
        except InvalidUUID as ex:
            raise invalid_uuid(self._metrics, str(ex)) from ex
        started = time.perf_counter()
        try:
            verdict = self._checker.check(canonical, fresh=wants_fresh(req))
        except Overloaded:
            self._metrics.count_check(503, "overloaded")  # answered by the error handler
            raise
        code = code_of(verdict)
        self._metrics.count_check(code, verdict.source)
        _log_check(verdict, code, time.perf_counter() - started)
        render_check(req, resp, verdict, self._checker.index_ages)

    on_head = on_get


def _log_check(verdict: Verdict, code: int, took: float) -> None:
    """Log a check: at INFO when OpenStack was asked; answers from memory at DEBUG.

    Every check also has its line in Gunicorn's access log, with the uuid (the
    path), the answer, the source (the Instance-Source header) and the time.
    """
    level = logging.DEBUG if verdict.source in _FROM_MEMORY else logging.INFO
    if not log.isEnabledFor(level):
        return
    calls = upstream_seconds.get() or []
    log.log(
        level,
        "check uuid=%s answer=%d source=%s took=%.3fs upstream=%.3fs/%d calls: %s",
        verdict.uuid,
        code,
        verdict.source,
        took,
        sum(calls),
        len(calls),
        verdict.sentence(),
    )


def invalid_uuid(metrics: Metrics, description: str) -> falcon.HTTPBadRequest:
    """Count, and return the 400 error for input that is not a UUID."""
    metrics.checks.labels("400", "input").inc()
    return falcon.HTTPBadRequest(title="Invalid UUID", description=description)


class MissingUUIDResource:
    """``/check`` with no UUID (an empty shell variable): 400, never a 404; POST is bulk."""

    def __init__(self, bulk: BulkCheckResource, metrics: Metrics) -> None:
        self.on_post = bulk.on_post
        self._metrics = metrics

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Refuse the request with a clear reason."""
        raise invalid_uuid(
            self._metrics, "no UUID given: use /check/<uuid> (8-4-4-4-12 or 32 hex digits)"
        )

    on_head = on_get


class MalformedCheckPath:
    """Sink for /check/... paths no route matched (e.g. a slash inside the id): 400."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def __call__(self, req: falcon.Request, resp: falcon.Response, **_: str) -> None:
        """Refuse the request with a clear reason."""
        raise invalid_uuid(
            self._metrics, "the path after /check/ must be one UUID (8-4-4-4-12 or 32 hex digits)"
        )
