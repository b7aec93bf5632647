"""Regressions: bugs the hostile-input and fault-hunting work (issue 6) found.

Each was a failing test before its fix. Two of them were false 404s for
existing instances (a compute endpoint answering 404 to everything; the service
account losing the admin role while running).
"""

from __future__ import annotations

import requests


def test_no_nesting_depth_makes_the_bulk_answer_a_500(service) -> None:
    """Items nested just below json.loads' limit parse, then blow the limit when echoed.

    The bulk answer echoes each invalid item whole ("uuid" and "input"), so
    rendering the response raises RecursionError in Falcon's JSON serializer:
    500 instead of a 4xx (found at depths 981-983 under Gunicorn here).
    """
    answers = {}
    with requests.Session() as session:
        for depth in range(900, 1100):
            body = b'{"uuids": [' + b"[" * depth + b"]" * depth + b"]}"
            answer = session.post(
                f"{service.url}/check",
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=30,
            )
            answers[depth] = answer.status_code
    assert [d for d, status in answers.items() if status >= 500] == []


def test_a_chunked_bulk_body_is_read_or_refused_with_411(service, demo) -> None:
    """A body sent with Transfer-Encoding: chunked is read as empty: "Invalid JSON".

    req.bounded_stream reads nothing without a Content-Length; Gunicorn sets
    wsgi.input_terminated, so the body could be read, or refused with 411.
    """

    def chunks():
        yield b'{"uuids": ["' + demo["existing"][0].encode() + b'"]}'

    answer = requests.post(
        f"{service.url}/check",
        data=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert answer.status_code in (200, 411), answer.text
    if answer.status_code == 200:
        assert answer.json()["results"][0]["code"] == 200


def test_a_400_for_a_text_plain_client_still_gives_the_reason(service) -> None:
    """README: "Everything else is 400 with a reason"; Accept: text/plain gets an empty body."""
    answer = requests.get(f"{service.url}/check/nope", headers={"Accept": "text/plain"}, timeout=10)
    assert answer.status_code == 400
    assert "not a UUID" in answer.text


def test_an_oversized_chunked_body_is_413(service) -> None:
    def chunks():
        yield b'{"uuids": ['
        for _ in range(2000):
            yield b'"' + b"0" * 1000 + b'",'

    answer = requests.post(
        f"{service.url}/check",
        data=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert answer.status_code in (411, 413), answer.text


def test_metrics_are_not_empty_without_a_preset_multiproc_dir(service, demo) -> None:
    """gunicorn_conf imports prometheus_client (through build_regions) before it sets
    PROMETHEUS_MULTIPROC_DIR, so every worker keeps in-memory values while /metrics
    reads the (empty) directory: 200 with an empty body, unless the variable was
    set before Gunicorn started (the systemd unit sets it; `instanceapi serve` by hand
    and the harness do not)."""
    assert requests.get(f"{service.url}/check/{demo['existing'][0]}", timeout=30).ok
    text = requests.get(f"{service.url}/metrics", timeout=30).text
    assert "instanceapi_checks_total" in text


def test_a_revoked_token_is_renewed_for_concurrent_requests(service, cloud) -> None:
    """README: a 401 from Nova makes the service re-authenticate once, transparently.

    With several requests in flight, keystoneauth re-authenticates for the first
    401 only (invalidate() is False for the others, the token being gone
    already), so the other requests return Nova's 401: 500 "GET /servers/{id}
    failed: HTTP 401 Unauthorized" for a perfectly healthy cloud.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tests.fakes import new_uuid

    wrong = []
    with ThreadPoolExecutor(16) as pool:
        for _ in range(5):  # a race: a few rounds make losing it near certain
            cloud.revoke_tokens()
            uuids = [new_uuid() for _ in range(16)]
            answers = pool.map(
                lambda u: requests.get(f"{service.url}/check/{u}", timeout=30), uuids
            )
            wrong += [a.json()["detail"] for a in answers if a.status_code != 404]
    assert wrong == []


def test_a_keystone_outage_is_named_as_keystone(service, cloud) -> None:
    """The 500 for a failed re-authentication names the Nova call instead of Keystone:
    "demo/RegionOne: GET /servers/{id} failed: ConnectFailure (unreachable or timed out)"
    when it is Keystone that is unreachable (and "HTTP 401 Unauthorized" when Keystone
    refuses the credentials, which reads like Nova refusing a token)."""
    from tests.fakes import new_uuid

    cloud.expire_tokens()
    cloud.fault("keystone", down=True)
    try:
        answer = requests.get(f"{service.url}/check/{new_uuid()}", timeout=30)
    finally:
        cloud.clear_faults()
    assert answer.status_code == 500
    assert "Keystone" in answer.json()["detail"], answer.json()["detail"]


def test_metrics_speak_the_text_format_prometheus_asks_for(service) -> None:
    """/metrics always announces CONTENT_TYPE_LATEST (prometheus_client 0.26:
    "text/plain; version=1.0.0"), whatever the scraper accepts. prometheus_client's
    own choose_encoder(accept) answers 0.0.4 to a plain or 0.0.4-asking client."""
    for accept in (None, "text/plain;version=0.0.4;q=0.4,*/*;q=0.1"):
        headers = {"Accept": accept} if accept else {}
        answer = requests.get(f"{service.url}/metrics", headers=headers, timeout=30)
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4"), accept


def test_a_nova_endpoint_answering_404_to_everything_is_doubt_not_absence(
    service,
    cloud,
) -> None:
    """FALSE 404 for an existing instance, then cached for good.

    When whatever answers at Nova's endpoint says 404 to every request (a proxy or
    load balancer with no backend, a wrong path in the catalog, an API mid-upgrade),
    the service reads the 404 to GET /servers/{id} as authoritative absence: an
    instance that exists, and is not (yet) in a fresh index, is answered 404 with
    Instance-Exists: false. The verdict then goes into the absent cache, so it stays
    404 after Nova is back. Nova's own answer for a missing server is
    {"itemNotFound": {"code": 404, "message": "Instance <uuid> could not be found."}};
    the listing (and version discovery) answering 404 too is another sign that this
    404 is not about the instance.
    """
    server = cloud.add_server(project="beta", name="created-after-the-last-refresh")
    cloud.fault("nova", status=404)  # every Nova request: 404 {"itemNotFound": ...}
    try:
        during = requests.get(f"{service.url}/check/{server.id}", timeout=30)
    finally:
        cloud.clear_faults()
    after = requests.get(f"{service.url}/check/{server.id}", timeout=30)
    assert (during.status_code, after.status_code) == (500, 200), (
        during.json()["detail"],
        after.json()["detail"],
    )


def test_losing_the_admin_role_while_running_is_doubt_not_absence(
    service,
    cloud,
) -> None:
    """FALSE 404 for an existing instance, then cached for good.

    The by-id rule is established at start-up and re-probed every
    INSTANCEAPI_VISIBILITY_INTERVAL (300 s). If the service account loses the admin
    role meanwhile (an operator moving it to least privilege; Keystone revokes the
    tokens when a role assignment is removed), the new token is not admin, Nova
    answers 404 for every other project's server, and the service still reads those
    404s as absence: an existing instance not (yet) in a fresh index is answered 404.
    The new token's roles are known at re-authentication (Identity.roles), so the
    rule could be re-established before any 404 is trusted.
    """
    server = cloud.add_server(project="beta", name="not-yet-in-the-index")
    password = cloud.password("admin")
    cloud.add_user("admin", password, "admin", ["member", "reader"])  # admin removed
    cloud.revoke_tokens()
    try:
        answer = requests.get(f"{service.url}/check/{server.id}", timeout=30)
    finally:
        cloud.add_user("admin", password, "admin", ["admin", "member", "reader"])
        cloud.revoke_tokens()
    assert answer.status_code == 500, answer.json()["detail"]
    assert answer.headers["Instance-Exists"] == "unknown"
