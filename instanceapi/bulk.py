"""``POST /check``: many UUIDs in one request, each answered by the single-check rules."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import falcon

from instanceapi.check.checker import Checker
from instanceapi.metrics import Metrics
from instanceapi.uuids import InvalidUUID, parse_uuid
from instanceapi.verdict import Presence, Verdict

log = logging.getLogger(__name__)

MAX_BULK_UUIDS = 1000
MAX_BULK_BYTES = 256 * 1024
CODE = {Presence.PRESENT: 200, Presence.ABSENT: 404, Presence.UNKNOWN: 500}


def code_of(verdict: Verdict) -> int:
    """Return the HTTP status a single check would answer for this verdict."""
    return 503 if verdict.source == "overloaded" else CODE[verdict.presence]


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
        return InvalidUUID(f"a JSON {_kind(item)} is not a UUID: expected a string")
    try:
        return parse_uuid(item)
    except InvalidUUID as ex:
        return ex


def _kind(item: object) -> str:
    return {dict: "object", list: "array", bool: "boolean", type(None): "null"}.get(
        type(item), "number"
    )


#: Longest echo of an input item: a bulk answer never repeats a large input.
MAX_ECHO = 80
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def echo(raw: object) -> object:
    """Return what to echo of an input item: bounded, and always valid JSON.

    Strings are cut to MAX_ECHO characters, with lone surrogates (which UTF-8
    cannot encode) written as ``\\udXXX`` text; numbers that JSON cannot hold
    (NaN, infinities) and very long ones become strings; containers are named
    by kind only.

    NOTE: a container is never echoed whole: one nested just below json.loads'
    depth limit would overflow the serializer on the way out.
    """
    if isinstance(raw, str):
        text = raw if len(raw) <= MAX_ECHO else raw[: MAX_ECHO - 3] + "..."
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(raw, bool) or raw is None:
        return raw
    if isinstance(raw, float) and not math.isfinite(raw):
        return _NON_FINITE[str(raw)]
    if isinstance(raw, int | float):
        return raw if len(repr(raw)) <= MAX_ECHO else "<long number>"
    return f"<{_kind(raw)}>"


def bulk_item(raw: object, outcome: Verdict | InvalidUUID) -> dict[str, Any]:
    """Return one result of a bulk answer."""
    if isinstance(outcome, InvalidUUID):
        shown = echo(raw)
        return {
            "uuid": shown,
            "input": shown,
            "exists": None,
            "code": 400,
            "status": None,
            "source": "input",
            "detail": str(outcome),
        }
    found = outcome.decisive
    return {
        "uuid": outcome.uuid,
        "input": echo(raw),
        "exists": outcome.presence.exists,
        "code": code_of(outcome),
        "status": found.status if found else None,
        "matched": outcome.matched,
        "source": outcome.source,
        "detail": outcome.sentence(),
    }


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
