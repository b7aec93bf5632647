"""HTTP requests whose response body is read only up to a size limit.

A peer that lies (a compromised service, a proxy, a tampered Satellite) must not
make reap read, store and write out unbounded data.
"""

from __future__ import annotations

from typing import Any

import requests

SERVICE_MAX_BYTES = 16 * 1024 * 1024  # a bulk answer of 1,000 results is well under 1 MiB
SATELLITE_MAX_BYTES = 64 * 1024 * 1024  # a page of 1,000 full host records is a few MiB


class TooLarge(requests.RequestException):
    """The response body is larger than the limit; it was not read."""


def request(
    session: requests.Session, method: str, url: str, *, limit: int, **kwargs: Any
) -> requests.Response:
    """Send one request; return the response with at most `limit` bytes of body read.

    The session's `verify` is passed on every request: requests would otherwise let
    REQUESTS_CA_BUNDLE (or CURL_CA_BUNDLE) override it, silently.
    """
    kwargs.setdefault("verify", session.verify)
    resp = session.request(method, url, stream=True, **kwargs)
    try:
        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise TooLarge(f"{method} {url}: response of {declared} bytes, over {limit}")
        data = resp.raw.read(limit + 1, decode_content=True) or b""
        if len(data) > limit:
            raise TooLarge(f"{method} {url}: response over {limit} bytes")
    finally:
        resp.close()
    resp._content = data  # the body as read; .json() and .text use it
    return resp
