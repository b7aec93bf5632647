"""The one place a verdict becomes an HTTP answer: status, headers, JSON and text.

Single checks (``GET /check/<uuid>``) and bulk items (``POST /check``) alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import falcon

from instanceapi.uuids import InvalidUUID
from instanceapi.verdict import Presence, Verdict

#: The absence marker: scripts must see this header before deleting anything.
EXISTS_HEADER = "Instance-Exists"
#: Where the answer came from: index, absent-cache or live (OpenStack asked now).
SOURCE_HEADER = "Instance-Source"
_HEADER_VALUE = {Presence.PRESENT: "true", Presence.ABSENT: "false", Presence.UNKNOWN: "unknown"}
CODE = {Presence.PRESENT: 200, Presence.ABSENT: 404, Presence.UNKNOWN: 500}


def code_of(verdict: Verdict) -> int:
    """Return the HTTP status a single check would answer for this verdict."""
    return 503 if verdict.source == "overloaded" else CODE[verdict.presence]


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


def render_check(
    req: falcon.Request,
    resp: falcon.Response,
    verdict: Verdict,
    index_ages: Callable[[], dict[str, float | None]],
) -> None:
    """Answer a single check: status, the Instance-* headers, then text or JSON."""
    resp.status = falcon.code_to_http_status(code_of(verdict))
    resp.set_header(EXISTS_HEADER, _HEADER_VALUE[verdict.presence])
    resp.set_header(SOURCE_HEADER, verdict.source)
    resp.cache_control = ["no-store"]
    if wants_text(req):
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = verdict.sentence() + "\n"
    else:
        body = verdict_body(verdict, index_ages())
        body["request_id"] = req.context.request_id
        resp.media = body


def wants_text(req: falcon.Request) -> bool:
    """Return True if the client prefers text/plain to JSON."""
    accept = req.accept
    if accept == "*/*" or "json" in accept or "text/plain" not in accept:
        return False  # the common cases, without parsing q-values
    return req.client_prefers(["application/json", "text/plain"]) == "text/plain"


def json_kind(item: object) -> str:
    """Return the JSON name of a non-string item's type (object, array, ...)."""
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
    return f"<{json_kind(raw)}>"


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
