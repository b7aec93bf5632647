"""HTTP resources: thin adapters between Falcon and the checker."""

from __future__ import annotations

import logging
import time

import falcon

from instanceapi.checker import Checker
from instanceapi.uuids import InvalidUUID, parse_uuid
from instanceapi.verdict import Presence, Verdict
from instanceapi.visibility import Rule

log = logging.getLogger(__name__)

#: The absence marker: scripts must see this header before deleting anything.
EXISTS_HEADER = "Instance-Exists"
_STATUS = {
    Presence.PRESENT: falcon.HTTP_200,
    Presence.ABSENT: falcon.HTTP_404,
    Presence.UNKNOWN: falcon.HTTP_500,
}
_HEADER_VALUE = {Presence.PRESENT: "true", Presence.ABSENT: "false", Presence.UNKNOWN: "unknown"}


def verdict_body(verdict: Verdict) -> dict[str, object]:
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
        "detail": verdict.sentence(),
        "targets": [s.as_dict() for s in verdict.sightings],
    }


class CheckResource:
    """``GET/HEAD /check/{uuid}``: does this instance exist?"""

    def __init__(self, checker: Checker) -> None:
        self._checker = checker

    def on_get(self, req: falcon.Request, resp: falcon.Response, raw: str) -> None:
        """Answer 200/404/500 for a UUID, 400 for anything else."""
        try:
            canonical = parse_uuid(raw)
        except InvalidUUID as ex:
            raise falcon.HTTPBadRequest(title="Invalid UUID", description=str(ex)) from ex
        started = time.perf_counter()
        verdict = self._checker.check(canonical)
        log.info(
            "check uuid=%s answer=%s took=%.3fs detail=%s",
            canonical,
            verdict.presence.value,
            time.perf_counter() - started,
            verdict.sentence(),
        )
        resp.status = _STATUS[verdict.presence]
        resp.set_header(EXISTS_HEADER, _HEADER_VALUE[verdict.presence])
        resp.cache_control = ["no-store"]
        if req.client_prefers(["application/json", "text/plain"]) == "text/plain":
            resp.content_type = falcon.MEDIA_TEXT
            resp.text = verdict.sentence() + "\n"
        else:
            resp.media = verdict_body(verdict)

    on_head = on_get


class MissingUUIDResource:
    """``/check`` with no UUID (an empty shell variable): 400, never a 404."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Refuse the request with a clear reason."""
        raise falcon.HTTPBadRequest(
            title="Invalid UUID",
            description="no UUID given: use /check/<uuid> (8-4-4-4-12 or 32 hex digits)",
        )

    on_head = on_get


def malformed_check_path(req: falcon.Request, resp: falcon.Response, **_: str) -> None:
    """Sink for /check/... paths no route matched (e.g. a slash inside the id): 400."""
    raise falcon.HTTPBadRequest(
        title="Invalid UUID",
        description="the path after /check/ must be one UUID (8-4-4-4-12 or 32 hex digits)",
    )


class HealthResource:
    """``GET /healthz``: the process is up; never touches OpenStack."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer 200."""
        resp.media = {"status": "ok"}


class ReadyResource:
    """``GET /readyz``: every target can be asked and its absence rule is established."""

    def __init__(self, checker: Checker) -> None:
        self._checker = checker

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer 200 when every target is ready, else 503 naming those that are not."""
        targets = []
        for target in self._checker.targets:
            visibility = target.visibility.current()
            # A target that cannot prove absence would answer 500 for every absent UUID.
            ready = visibility.checked_at >= 0 and visibility.rule is not Rule.NONE
            targets.append(
                {
                    "target": target.target.name,
                    "ready": ready,
                    "rule": visibility.rule.value,
                    "reason": visibility.reason,
                }
            )
        ok = all(t["ready"] for t in targets)
        resp.status = falcon.HTTP_200 if ok else falcon.HTTP_503
        resp.media = {"ready": ok, "targets": targets}
