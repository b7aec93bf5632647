"""HTTP resources: thin adapters between Falcon and the checker."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import falcon

from instanceapi.checker import Checker
from instanceapi.uuids import InvalidUUID, parse_uuid
from instanceapi.verdict import Presence, Verdict
from instanceapi.visibility import Rule

log = logging.getLogger(__name__)

#: The absence marker: scripts must see this header before deleting anything.
EXISTS_HEADER = "Instance-Exists"
MAX_BULK_UUIDS = 1000
MAX_BULK_BYTES = 256 * 1024
_STATUS = {
    Presence.PRESENT: falcon.HTTP_200,
    Presence.ABSENT: falcon.HTTP_404,
    Presence.UNKNOWN: falcon.HTTP_500,
}
_CODE = {Presence.PRESENT: 200, Presence.ABSENT: 404, Presence.UNKNOWN: 500}
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


def invalid_uuid(description: str) -> falcon.HTTPBadRequest:
    """Return the 400 error for input that is not a UUID."""
    return falcon.HTTPBadRequest(title="Invalid UUID", description=description)


class CheckResource:
    """``GET/HEAD /check/{uuid}``: does this instance exist? ``POST /check``: many at once."""

    def __init__(self, checker: Checker) -> None:
        self._checker = checker

    def on_get(self, req: falcon.Request, resp: falcon.Response, raw: str) -> None:
        """Answer 200/404/500 for a UUID, 400 for anything else."""
        try:
            canonical = parse_uuid(raw)
        except InvalidUUID as ex:
            raise invalid_uuid(str(ex)) from ex
        started = time.perf_counter()
        verdict = self._checker.check(canonical)
        log.info(
            "check uuid=%s answer=%d source=%s took=%.3fs: %s",
            canonical,
            _CODE[verdict.presence],
            verdict.source,
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
            resp.media = verdict_body(verdict, self._checker.index_ages())

    on_head = on_get


class BulkCheckResource:
    """``POST /check`` with ``{"uuids": [...]}``: one result per UUID, in order."""

    def __init__(self, checker: Checker) -> None:
        self._checker = checker

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer 200 with per-item results that follow the single-check rules exactly."""
        items = read_bulk_request(req)
        parsed: list[str | InvalidUUID] = []
        for item in items:
            try:
                parsed.append(parse_uuid(item) if isinstance(item, str) else _not_a_string(item))
            except InvalidUUID as ex:
                parsed.append(ex)
        valid = [p for p in parsed if isinstance(p, str)]
        verdicts = iter(self._checker.check_many(valid))
        results = [
            bulk_item(raw, p if isinstance(p, InvalidUUID) else next(verdicts))
            for raw, p in zip(items, parsed, strict=True)
        ]
        log.info("bulk check: %d uuids, %d invalid", len(items), len(items) - len(valid))
        resp.cache_control = ["no-store"]
        resp.media = {"count": len(results), "results": results}


def _not_a_string(item: object) -> str:
    raise InvalidUUID(f"{json.dumps(item)[:64]} is not a UUID: expected a string")


def bulk_item(raw: object, outcome: Verdict | InvalidUUID) -> dict[str, Any]:
    """Return one result of a bulk answer."""
    if isinstance(outcome, InvalidUUID):
        return {
            "uuid": raw,
            "input": raw,
            "exists": None,
            "code": 400,
            "status": None,
            "detail": str(outcome),
        }
    found = outcome.decisive
    return {
        "uuid": outcome.uuid,
        "input": raw,
        "exists": outcome.presence.exists,
        "code": _CODE[outcome.presence],
        "status": found.status if found else None,
        "matched": outcome.matched,
        "source": outcome.source,
        "detail": outcome.sentence(),
    }


def read_bulk_request(req: falcon.Request) -> list[Any]:
    """Return the list of UUIDs of a bulk request, or raise a clear 4xx."""
    if req.content_length is not None and req.content_length > MAX_BULK_BYTES:
        raise falcon.HTTPContentTooLarge(
            title="Request too large", description=f"a bulk body is at most {MAX_BULK_BYTES} bytes"
        )
    if not req.content_type or req.content_type.split(";")[0].strip() != falcon.MEDIA_JSON:
        raise falcon.HTTPUnsupportedMediaType(
            title="JSON expected",
            description='send Content-Type: application/json with a body like {"uuids": ["..."]}',
        )
    data = req.bounded_stream.read(MAX_BULK_BYTES + 1)
    if len(data) > MAX_BULK_BYTES:
        raise falcon.HTTPContentTooLarge(
            title="Request too large", description=f"a bulk body is at most {MAX_BULK_BYTES} bytes"
        )
    try:
        body = json.loads(data)
    except (ValueError, RecursionError) as ex:
        raise falcon.HTTPBadRequest(
            title="Invalid JSON", description=f"the body is not JSON: {ex}"[:200]
        ) from ex
    uuids = body.get("uuids") if isinstance(body, dict) else None
    if not isinstance(uuids, list):
        raise falcon.HTTPBadRequest(
            title="Invalid bulk request", description='expected a JSON object {"uuids": [...]}'
        )
    if len(uuids) > MAX_BULK_UUIDS:
        raise falcon.HTTPContentTooLarge(
            title="Too many UUIDs",
            description=f"{len(uuids)} UUIDs: at most {MAX_BULK_UUIDS} per request",
        )
    return uuids


class MissingUUIDResource:
    """``/check`` with no UUID (an empty shell variable): 400, never a 404."""

    def __init__(self, bulk: BulkCheckResource) -> None:
        self.on_post = bulk.on_post

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Refuse the request with a clear reason."""
        raise invalid_uuid("no UUID given: use /check/<uuid> (8-4-4-4-12 or 32 hex digits)")

    on_head = on_get


def malformed_check_path(req: falcon.Request, resp: falcon.Response, **_: str) -> None:
    """Sink for /check/... paths no route matched (e.g. a slash inside the id): 400."""
    raise invalid_uuid("the path after /check/ must be one UUID (8-4-4-4-12 or 32 hex digits)")


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
