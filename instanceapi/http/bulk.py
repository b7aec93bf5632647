"""``POST /check``: many UUIDs in one request, each answered by the single-check rules."""

from __future__ import annotations

import json
import logging
from typing import Any

import falcon

from instanceapi.check.checker import Checker
from instanceapi.http.render import bulk_item, json_kind
from instanceapi.metrics import Metrics
from instanceapi.uuids import InvalidUUID, parse_uuid

log = logging.getLogger(__name__)

MAX_BULK_UUIDS = 1000
MAX_BULK_BYTES = 256 * 1024


def wants_fresh(req: falcon.Request) -> bool:
    """Return True if the client demands fresh evidence (``Cache-Control: no-cache``)."""
    directives = (req.get_header("Cache-Control") or "").lower().split(",")
    return any(d.strip().split("=", 1)[0] == "no-cache" for d in directives)


class BulkCheckResource:
    """``POST /check`` with ``{"uuids": [...]}``: one result per UUID, in order."""

    def __init__(self, checker: Checker, metrics: Metrics) -> None:
        self._checker = checker
        self._metrics = metrics

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer 200 with per-item results that follow the single-check rules exactly."""
        items = read_bulk_request(req)
        parsed = [_parse(item) for item in items]
        valid = [p for p in parsed if isinstance(p, str)]
        verdicts = iter(self._checker.check_many(valid, fresh=wants_fresh(req)))
        results = [
            bulk_item(raw, p if isinstance(p, InvalidUUID) else next(verdicts))
            for raw, p in zip(items, parsed, strict=True)
        ]
        for result in results:
            self._metrics.count_check(result["code"], result["source"])
        log.info("bulk check: %d uuids, %d invalid", len(items), len(items) - len(valid))
        resp.cache_control = ["no-store"]
        resp.media = {"count": len(results), "results": results}


def _parse(item: object) -> str | InvalidUUID:
    if not isinstance(item, str):
        return InvalidUUID(f"a JSON {json_kind(item)} is not a UUID: expected a string")
    try:
        return parse_uuid(item)
    except InvalidUUID as ex:
        return ex


def _too_large(description: str) -> falcon.HTTPContentTooLarge:
    return falcon.HTTPContentTooLarge(title="Request too large", description=description)


def _read_body(req: falcon.Request) -> bytes:
    """Read at most MAX_BULK_BYTES + 1 bytes, with or without a Content-Length."""
    if req.content_length is not None:
        return bytes(req.bounded_stream.read(MAX_BULK_BYTES + 1))
    # A chunked body: readable to its end only where the server says the input
    # is terminated (Gunicorn does); otherwise ask for a length.
    if not req.env.get("wsgi.input_terminated"):
        raise falcon.HTTPLengthRequired(
            title="Length required", description="send the bulk body with a Content-Length"
        )
    return bytes(req.stream.read(MAX_BULK_BYTES + 1))


def read_bulk_request(req: falcon.Request) -> list[Any]:
    """Return the list of UUIDs of a bulk request, or raise a clear 4xx."""
    limit = f"a bulk body is at most {MAX_BULK_BYTES} bytes"
    if req.content_length is not None and req.content_length > MAX_BULK_BYTES:
        raise _too_large(limit)
    if not req.content_type or req.content_type.split(";")[0].strip() != falcon.MEDIA_JSON:
        raise falcon.HTTPUnsupportedMediaType(
            title="JSON expected",
            description='send Content-Type: application/json and a body like {"uuids": [...]}',
        )
    data = _read_body(req)
    if len(data) > MAX_BULK_BYTES:
        raise _too_large(limit)
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
        raise _too_large(f"{len(uuids)} UUIDs: at most {MAX_BULK_UUIDS} per request")
    return uuids
