"""Keystone v3 subset: version discovery and tokens (issue, validate, revoke)."""

from __future__ import annotations

import secrets
import uuid

from instanceapi.testing.httpd import App, Request, Response
from instanceapi.testing.identity import (
    DOMAIN_ID,
    DOMAIN_NAME,
    AuthError,
    BadAuthRequest,
    Token,
)
from instanceapi.testing.model import keystone_time
from instanceapi.testing.state import CloudState, guarded, keystone_error, request_id_headers

INTERFACES = ("public", "internal", "admin")
DOMAIN = {"id": DOMAIN_ID, "name": DOMAIN_NAME}


def version_doc(base_url: str) -> dict[str, object]:
    """The v3 version document."""
    return {
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": f"{base_url}/v3/"}],
        "media-types": [
            {"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}
        ],
    }


def _endpoint_id(*parts: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, "/".join(parts)).hex


def catalog(state: CloudState) -> list[dict[str, object]]:
    """Service catalog: identity and compute, every region, every interface."""
    services: list[dict[str, object]] = []
    for stype, name, urls in (
        ("identity", "keystone", {r: f"{state.keystone_url}/v3" for r in state.regions}),
        ("compute", "nova", state.nova_urls),
    ):
        endpoints = [
            {
                "id": _endpoint_id(stype, region, interface),
                "interface": interface,
                "region": region,
                "region_id": region,
                "url": url,
            }
            for region, url in urls.items()
            for interface in INTERFACES
        ]
        services.append(
            {"id": _endpoint_id(stype), "type": stype, "name": name, "endpoints": endpoints}
        )
    return services


def token_body(state: CloudState, token: Token) -> dict[str, object]:
    """The JSON body Keystone returns with a token. Never contains secrets."""
    identity = state.identity
    user = identity.user_by_id(token.user_id)
    body: dict[str, object] = {
        "methods": list(token.methods),
        "user": {"id": user.id, "name": user.name, "domain": DOMAIN, "password_expires_at": None},
        "audit_ids": [secrets.token_urlsafe(16)[:22]],
        "expires_at": keystone_time(token.expires_at),
        "issued_at": keystone_time(token.issued_at),
        "project": {
            "id": token.project_id,
            "name": identity.project_name(token.project_id),
            "domain": DOMAIN,
        },
        "is_domain": False,
        "roles": [{"id": identity.role_id(r), "name": r} for r in token.roles],
        "catalog": catalog(state),
    }
    if token.app_cred_id:
        cred = identity.app_creds[token.app_cred_id]
        info: dict[str, object] = {"id": cred.id, "name": cred.name, "restricted": True}
        if cred.access_rules:
            info["access_rules"] = cred.access_rules
        body["application_credential"] = info
    return {"token": body}


def _unauthorized(request: Request) -> Response:
    headers = request_id_headers()
    headers["WWW-Authenticate"] = f'Keystone uri="{request.base_url}/v3"'
    return Response(401, keystone_error(401), headers)


def _issue(state: CloudState, request: Request) -> Response:
    try:
        body = request.json()
    except ValueError:
        return Response(400, keystone_error(400, "Malformed JSON body."), request_id_headers())
    with state.lock:
        try:
            token = state.identity.authenticate(body, state.clock.now(), state.config.token_ttl)
        except (BadAuthRequest, AttributeError, TypeError) as exc:
            return Response(400, keystone_error(400, str(exc)), request_id_headers())
        except AuthError:
            return _unauthorized(request)
        payload = token_body(state, token)
    headers = request_id_headers()
    headers["X-Subject-Token"] = token.id
    return Response(201, payload, headers)


def _validate(state: CloudState, request: Request) -> Response:
    with state.lock:
        now = state.clock.now()
        if state.identity.valid_token(request.headers.get("x-auth-token", ""), now) is None:
            return _unauthorized(request)
        subject_id = request.headers.get("x-subject-token", "")
        subject = state.identity.valid_token(subject_id, now)
        if subject is None:
            message = f"Could not find token: {subject_id[:16]}..."
            return Response(404, keystone_error(404, message), request_id_headers())
        if request.method == "DELETE":
            subject.revoked = True
            return Response(204, None, request_id_headers())
        payload = token_body(state, subject)
    headers = request_id_headers()
    headers["X-Subject-Token"] = subject_id
    return Response(200, payload, headers)


def classify(request: Request) -> str:
    """Counter name of a Keystone request."""
    path = request.path.rstrip("/")
    if path in ("", "/v3"):
        return "discovery"
    if path == "/v3/auth/tokens":
        return "token" if request.method == "POST" else "validate"
    return "other"


def make_app(state: CloudState) -> App:
    """The Keystone application (with fault injection and counting)."""

    def app(request: Request) -> Response:
        path = request.path.rstrip("/")
        base = request.base_url
        if request.method in ("GET", "HEAD") and path == "":
            return Response(
                300, {"versions": {"values": [version_doc(base)]}}, request_id_headers()
            )
        if request.method in ("GET", "HEAD") and path == "/v3":
            return Response(200, {"version": version_doc(base)}, request_id_headers())
        if path == "/v3/auth/tokens":
            if request.method == "POST":
                return _issue(state, request)
            if request.method in ("GET", "HEAD", "DELETE"):
                return _validate(state, request)
            return Response(405, keystone_error(405), request_id_headers())
        return Response(404, keystone_error(404, "Not Found"), request_id_headers())

    return guarded(state, "keystone", None, app, classify, keystone_error)
