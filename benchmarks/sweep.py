"""Satellite-like sweeps: every UUID of a list checked once, each on a new connection.

A new connection per check is what a sweep script running ``curl`` per host
does, and it lets Gunicorn hand each check to any worker (no connection pins a
UUID to the worker that saw it before).
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

CHECK_TIMEOUT = 30.0


@dataclass(frozen=True)
class SweepResult:
    """One sweep: how many checks, how many answered wrongly, and where answers came from."""

    checks: int
    wrong: int
    sources: Counter[str]
    seconds: float


@dataclass(frozen=True)
class Answer:
    """One /check answer: status, the body's source, and every target's index age."""

    status: int
    source: str | None
    ages: tuple[float | None, ...]


def get_check(base_url: str, uuid: str) -> Answer:
    """GET /check/<uuid> on a new connection; status 0 when the request failed."""
    parts = urllib.parse.urlsplit(base_url)
    host = parts.hostname or "127.0.0.1"
    connection = http.client.HTTPConnection(host, parts.port, timeout=CHECK_TIMEOUT)
    try:
        connection.request("GET", f"/check/{uuid}", headers={"Connection": "close"})
        response = connection.getresponse()
        body = json.loads(response.read() or b"{}")
    except (OSError, http.client.HTTPException, ValueError):
        return Answer(0, None, ())
    finally:
        connection.close()
    ages = tuple((body.get("index_age_seconds") or {}).values())
    return Answer(response.status, body.get("source"), ages)


def sweep(base_url: str, pairs: Sequence[tuple[str, int]], *, concurrency: int) -> SweepResult:
    """Check every (uuid, expected status) once with `concurrency` clients."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="sweep") as pool:
        answers = list(pool.map(lambda pair: get_check(base_url, pair[0]), pairs))
    wrong = sum(a.status != expected for a, (_, expected) in zip(answers, pairs, strict=True))
    sources = Counter(a.source or f"http-{a.status}" for a in answers)
    return SweepResult(len(pairs), wrong, sources, time.perf_counter() - started)


def wait_for_index(
    base_url: str,
    probe_uuid: str,
    *,
    listed: Callable[[], bool],
    consecutive: int,
    timeout: float,
) -> float:
    """Wait until every worker answers from a loaded index; return the seconds waited.

    `listed` says whether the cloud has served every worker its full listing;
    after that, `consecutive` checks on new connections in a row must come from
    the index with every target's age known.
    """
    started = time.monotonic()
    deadline = started + timeout
    streak = 0
    while time.monotonic() < deadline and streak < consecutive:
        if not listed():
            time.sleep(0.2)
            continue
        answer = get_check(base_url, probe_uuid)
        fresh = answer.source == "index" and all(age is not None for age in answer.ages)
        streak = streak + 1 if fresh and answer.ages else 0
        if not streak:
            time.sleep(0.1)
    if streak < consecutive:
        raise RuntimeError(f"the index did not load within {timeout:.0f}s")
    return time.monotonic() - started
