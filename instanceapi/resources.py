"""HTTP resources: thin adapters between Falcon and the checker."""

from __future__ import annotations

import logging
import time

import falcon

from instanceapi.bulk import BulkCheckResource, code_of, wants_fresh
from instanceapi.check.checker import Checker, Overloaded
from instanceapi.check.refresher.loop import record_readiness
from instanceapi.errors import EXISTS_HEADER
from instanceapi.metrics import Metrics
from instanceapi.middleware import upstream_seconds
from instanceapi.uuids import InvalidUUID, parse_uuid
from instanceapi.verdict import Presence, Verdict

log = logging.getLogger(__name__)

#: Where the answer came from: index, absent-cache or live (OpenStack asked now).
SOURCE_HEADER = "Instance-Source"
_FROM_MEMORY = frozenset({"index", "absent-cache"})
_HEADER_VALUE = {Presence.PRESENT: "true", Presence.ABSENT: "false", Presence.UNKNOWN: "unknown"}


def verdict_body(
    verdict: Verdict, index_ages: dict[str, float | None] | None = None
) -> dict[str, object]:
    """Return the JSON body for a verdict."""
    found = verdict.decisive
    return {
        "uuid": verdict.uuid,
        "exists": verdict.presence.exists,
        "status": found.status if found else None,
        "cloud": found.cloud if found else None,
        "region": found.region if found else None,
        "matched": verdict.matched,
        "rule": found.rule if found else None,
        "source": verdict.source,
        "detail": verdict.sentence(),
        "targets": [s.as_dict() for s in verdict.sightings],
        "index_age_seconds": {
            k: None if v is None else round(v, 1) for k, v in (index_ages or {}).items()
        },
    }


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
        resp.status = falcon.code_to_http_status(code)
        resp.set_header(EXISTS_HEADER, _HEADER_VALUE[verdict.presence])
        resp.set_header(SOURCE_HEADER, verdict.source)
        resp.cache_control = ["no-store"]
        if _wants_text(req):
            resp.content_type = falcon.MEDIA_TEXT
            resp.text = verdict.sentence() + "\n"
        else:
            body = verdict_body(verdict, self._checker.index_ages())
            body["request_id"] = req.context.request_id
            resp.media = body

    on_head = on_get


def _wants_text(req: falcon.Request) -> bool:
    """Return True if the client prefers text/plain to JSON."""
    accept = req.accept
    if accept == "*/*" or "json" in accept or "text/plain" not in accept:
        return False  # the common cases, without parsing q-values
    return req.client_prefers(["application/json", "text/plain"]) == "text/plain"


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
        for target in self._checker.targets:
            problem = target.readiness()
            targets.append(
                {
                    "target": target.target.name,
                    "ready": problem is None,
                    "rule": target.visibility.peek().rule.value,
                    "index_servers": len(target.index),
                    "index_age_seconds": target.index.age(),
                    "reason": problem or "ready",
                }
            )
        ok = all(t["ready"] for t in targets)
        excluded = {
            name
            for t in self._checker.targets
            if t.regions
            for name in t.regions.coverage.excluded_names()
        }
        resp.status = falcon.HTTP_200 if ok else falcon.HTTP_503
        resp.media = (
            {"ready": ok, "targets": targets, "excluded_regions": sorted(excluded)}
            if self._detail
            else {"ready": ok}
        )

    on_head = on_get


class MetricsResource:
    """``GET /metrics``: Prometheus text format, every worker's values."""

    def __init__(self, metrics: Metrics, checker: Checker | None = None) -> None:
        self._metrics = metrics
        self._checker = checker

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Render the metrics, with this worker's readiness as of now."""
        if self._checker is not None:
            record_readiness(self._metrics, self._checker.targets)
        resp.data, resp.content_type = self._metrics.render(req.get_header("Accept") or "")
