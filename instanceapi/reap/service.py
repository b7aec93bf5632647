"""Client of the instanceapi HTTP contract, biased towards "keep".

Only two shapes of answer count as absence:

- `GET /check/{uuid}` answering 404 with the header `Instance-Exists: false`, a
  `application/json` body and `"exists": false` in it (a bare 404 from a wrong URL
  or a proxy has neither);
- `POST /check` answering 200 with exactly one result per UUID sent, in order,
  each echoing its `input`, where the result says `"exists": false`.

Everything else (200, 400, 401, 5xx, timeouts, refused connections, redirects,
bodies of an unexpected shape) is UNKNOWN or PRESENT, and so means "keep".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import requests

from instanceapi.reap import capped
from instanceapi.reap.model import Answer, Verdict
from instanceapi.reap.report import clip

Progress = Callable[[str, int, int], None]
MARKER = "Instance-Exists"
#: Every check demands a new observation: no cached absence is replayed, so
#: each run that would mark or delete a host rests on evidence of its own.
FRESH = {"Cache-Control": "no-cache"}


def build_session(
    token: str | None = None,
    ca_bundle: str | None = None,
    client_cert: tuple[str, str] | None = None,
) -> requests.Session:
    """Return a session for the service, with a bearer token and a client certificate if set."""
    session = requests.Session()
    session.verify = ca_bundle or True
    if client_cert:
        session.cert = client_cert
    session.headers["Accept"] = "application/json"
    session.headers["User-Agent"] = "instanceapi-reap"
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    return session


class ServiceClient:
    """Ask the service whether UUIDs exist: in bulk when it can, one by one otherwise."""

    def __init__(
        self,
        base_url: str,
        session: requests.Session,
        *,
        timeout: float = 30.0,
        batch_size: int = 500,
        max_wait: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        max_bytes: int = capped.SERVICE_MAX_BYTES,
    ) -> None:
        """Talk to the service at `base_url`; wait at most `max_wait` s on a 503 Retry-After."""
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.timeout = timeout
        self.batch_size = max(1, min(batch_size, 1000))
        self.max_wait = max_wait
        self.max_bytes = max_bytes
        self._sleep = sleep
        self._bulk: bool | None = None  # None until the first POST /check tells us

    def readiness(self) -> str | None:
        """Return why the service is not ready, or None when `/readyz` answers 200."""
        try:
            resp = self._send("GET", "/readyz")
        except requests.RequestException as ex:
            return f"GET /readyz: {ex}"
        return None if resp.status_code == 200 else f"GET /readyz: {_describe(resp)}"

    def canary(self, uuid: str) -> str | None:
        """Return why the known-existing `uuid` failed the check, or None if it exists."""
        verdict = self.check_one(uuid)
        if verdict.answer is Answer.PRESENT:
            return None
        return f"canary {uuid} answered {verdict.answer}: {verdict.detail}"

    def check_one(self, uuid: str) -> Verdict:
        """Ask `GET /check/{uuid}`."""
        try:
            resp = self._send("GET", f"/check/{uuid}", headers=FRESH)
        except requests.RequestException as ex:
            return Verdict(Answer.UNKNOWN, f"GET /check: {type(ex).__name__}: {ex}")
        return _single_verdict(resp, uuid)

    def check_many(
        self, uuids: Sequence[str], progress: Progress | None = None
    ) -> dict[str, Verdict]:
        """Return a verdict for every distinct UUID in `uuids`."""
        unique = list(dict.fromkeys(uuids))
        verdicts: dict[str, Verdict] = {}
        for start in range(0, len(unique), self.batch_size):
            chunk = unique[start : start + self.batch_size]
            found = self._bulk_check(chunk) if self._bulk is not False else None
            if found is None:
                found = {}
                for uuid in chunk:
                    found[uuid] = self.check_one(uuid)
                    if progress is not None:
                        progress("checking", len(verdicts) + len(found), len(unique))
            verdicts.update(found)
            if progress is not None:
                progress("checking", len(verdicts), len(unique))
        return verdicts

    def _bulk_check(self, chunk: list[str]) -> dict[str, Verdict] | None:
        """Ask `POST /check`; None when the service has no bulk endpoint."""
        try:
            resp = self._send("POST", "/check", json={"uuids": chunk}, headers=FRESH)
        except requests.RequestException as ex:
            return dict.fromkeys(chunk, Verdict(Answer.UNKNOWN, f"POST /check: {ex}"))
        if resp.status_code in (404, 405):
            self._bulk = False  # an older service: fall back to GET for the whole run
            return None
        self._bulk = True
        return _bulk_verdicts(resp, chunk)

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = self.base_url + path
        for _ in range(2):
            resp = capped.request(
                self.session, method, url, limit=self.max_bytes,
                timeout=self.timeout, allow_redirects=False, **kwargs,
            )  # fmt: skip
            wait = _retry_after(resp)
            if resp.status_code != 503 or wait is None or wait > self.max_wait:
                break
            self._sleep(wait)
        return resp


def _single_verdict(resp: requests.Response, uuid: str) -> Verdict:
    marker = resp.headers.get(MARKER, "").strip().lower()
    body = _json_body(resp)
    if resp.status_code == 404:
        if marker == "false" and body is not None and body.get("exists") is False:
            if body.get("uuid", uuid) == uuid:
                return Verdict(Answer.ABSENT, clip(str(body.get("detail") or "404, exists: false")))
            return Verdict(Answer.UNKNOWN, f"404 about another UUID {body.get('uuid')!r}")
        return Verdict(Answer.UNKNOWN, "404 without the absence marker (wrong URL or a proxy?)")
    if resp.status_code == 200:
        if marker == "true" and body is not None and body.get("exists") is True:
            return Verdict(Answer.PRESENT, clip(str(body.get("status") or "exists")))
        return Verdict(Answer.UNKNOWN, "200 without a well-formed answer")
    return Verdict(Answer.UNKNOWN, f"GET /check: {_describe(resp)}")


def _bulk_verdicts(resp: requests.Response, chunk: list[str]) -> dict[str, Verdict]:
    def everyone(why: str) -> dict[str, Verdict]:
        return dict.fromkeys(chunk, Verdict(Answer.UNKNOWN, f"POST /check: {why}"))

    if resp.status_code != 200:
        return everyone(_describe(resp))
    body = _json_body(resp)
    results = body.get("results") if body is not None else None
    if not isinstance(results, list) or len(results) != len(chunk):
        return everyone("response does not hold one result per UUID sent")
    verdicts: dict[str, Verdict] = {}
    for sent, item in zip(chunk, results, strict=True):
        if not isinstance(item, dict) or item.get("input") != sent:
            return everyone("results do not match the UUIDs sent, in order")
        verdicts[sent] = _bulk_item(item, sent)
    return verdicts


def _bulk_item(item: dict[str, Any], sent: str) -> Verdict:
    exists = item.get("exists")
    detail = clip(str(item.get("detail") or item.get("status") or ""))
    if exists is True:
        return Verdict(Answer.PRESENT, detail or "exists")
    if exists is False and item.get("uuid") == sent:
        return Verdict(Answer.ABSENT, detail or "exists: false")
    return Verdict(Answer.UNKNOWN, detail or f"exists: {exists!r}")


def _json_body(resp: requests.Response, *, problem: bool = False) -> dict[str, Any] | None:
    mime = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if mime != "application/json" and not (problem and mime.endswith("+json")):
        return None
    try:
        body = resp.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _retry_after(resp: requests.Response) -> float | None:
    try:
        return max(0.0, float(resp.headers.get("Retry-After", "")))
    except ValueError:
        return None


def _describe(resp: requests.Response) -> str:
    body = _json_body(resp, problem=True) or {}
    why = body.get("description") or body.get("detail") or body.get("title") or ""
    return f"HTTP {resp.status_code}" + (f": {str(why)[:200]}" if why else "")
