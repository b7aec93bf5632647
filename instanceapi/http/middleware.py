"""Falcon middleware: request ids, and who may ask."""

from __future__ import annotations

import contextvars
import hmac
import ipaddress
import itertools
import re
import uuid
from collections.abc import Sequence
from typing import Any

import falcon

from instanceapi.config import Network
from instanceapi.logs import request_id

REQUEST_ID_HEADER = "X-Request-ID"
FORWARDED_FOR_HEADER = "X-Forwarded-For"
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
#: Seconds spent waiting on OpenStack during the current request, by call.
upstream_seconds: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar(
    "upstream_seconds", default=None
)


_ids = itertools.count(1)
_prefix: list[str] = []


def _new_request_id() -> str:
    """Return a new request id: a random prefix per process, then a counter.

    Unique across workers and restarts, and cheaper than uuid4() per request
    (one os.urandom per process instead of one per request).
    """
    if not _prefix:
        _prefix.append(uuid.uuid4().hex[:16])
    return f"{_prefix[0]}{next(_ids):016x}"


class RequestContext:
    """Take the caller's X-Request-ID (or make one), echo it, and stamp logs with it."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Bind the request id and an upstream-time tally to this request's context."""
        given = req.get_header(REQUEST_ID_HEADER) or ""
        # Only a harmless id is echoed and logged: no log injection through headers.
        rid = given if given and _SAFE_ID.fullmatch(given) else _new_request_id()
        req.context.request_id = rid
        req.context.tokens = (request_id.set(rid), upstream_seconds.set([]))
        resp.set_header(REQUEST_ID_HEADER, rid)

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        """Unbind what process_request bound."""
        tokens = getattr(req.context, "tokens", None)
        if tokens:
            request_id.reset(tokens[0])
            upstream_seconds.reset(tokens[1])


def add_upstream_time(seconds: float) -> None:
    """Add an upstream call's duration to the current request's tally (if any)."""
    tally = upstream_seconds.get()
    if tally is not None:
        tally.append(seconds)


def client_address(
    req: falcon.Request, forwarded_allow: Sequence[Network]
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Return the caller's address: the peer's, or the proxy's word for it.

    X-Forwarded-For counts only when the peer is a trusted proxy (the networks
    Gunicorn's ``forwarded_allow_ips`` lists too), and then only its last entry:
    the one the proxy itself wrote. Anything a client wrote before it is ignored.
    None: no usable address (refused by any allowlist).
    """
    peer = _parse_ip(req.remote_addr)
    forwarded = req.get_header(FORWARDED_FOR_HEADER)
    if peer is None or not forwarded or not any(peer in net for net in forwarded_allow):
        return peer
    return _parse_ip(forwarded.rsplit(",", 1)[-1])


def _parse_ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address((text or "").strip())
    except ValueError:
        return None


class AccessControl:
    """Refuse callers outside the allowed networks (403) or without a valid token (401)."""

    def __init__(
        self,
        tokens: Sequence[str],
        networks: Sequence[Network],
        open_paths: Sequence[str] = ("/healthz",),
        forwarded_allow: Sequence[Network] = (),
    ) -> None:
        self._tokens = [t.encode() for t in tokens]
        self._networks = tuple(networks)
        self._open_paths = frozenset(open_paths)
        self._forwarded_allow = tuple(forwarded_allow)

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Raise 403/401 unless the caller may ask; liveness stays open."""
        if req.path in self._open_paths:
            return
        if self._networks and not self._address_allowed(req):
            raise falcon.HTTPForbidden(
                title="Forbidden", description="this client address may not ask"
            )
        if self._tokens and not self._token_valid(req.get_header("Authorization") or ""):
            raise falcon.HTTPUnauthorized(
                title="Unauthorized",
                description="a valid bearer token is required",
                challenges=['Bearer realm="instanceapi"'],
            )

    def _address_allowed(self, req: falcon.Request) -> bool:
        ip = client_address(req, self._forwarded_allow)
        return ip is not None and any(ip in network for network in self._networks)

    def _token_valid(self, header: str) -> bool:
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            return False
        candidate = given.strip().encode()
        # Compare with every token, in constant time each: no early exit to time.
        matches = [hmac.compare_digest(candidate, token) for token in self._tokens]
        return any(matches)


class HostCheck:
    """Refuse (400) a request whose Host header names none of the allowed hosts.

    Without it a web page could reach a loopback-bound, token-less service
    through DNS rebinding: the browser sends the attacker's host name.
    """

    def __init__(self, hosts: Sequence[str]) -> None:
        self._hosts = frozenset(host_name(h) for h in hosts)

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Raise 400 unless the Host header (without its port) is allowed."""
        if host_name(req.get_header("Host") or "") not in self._hosts:
            raise falcon.HTTPBadRequest(
                title="Invalid Host", description="this host name is not served here"
            )


def host_name(host: str) -> str:
    """Return a Host header's name: lower case, without port or IPv6 brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host
