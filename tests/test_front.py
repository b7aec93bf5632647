"""The shipped nginx front (deploy/nginx/) end to end: real nginx, Gunicorn, simulated cloud.

nginx runs the shipped site file with only its paths and ports replaced
(instanceapi/testing/front.py), in front of the real service, over TLS made by
a throw-away CA.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
from collections.abc import Iterator

import pytest
import requests

from instanceapi.http.bulk import MAX_BULK_BYTES
from instanceapi.reap.model import Answer
from instanceapi.reap.service import ServiceClient, build_session
from instanceapi.testing import SimulatedCloud, harness, seed_demo
from instanceapi.testing.front import SITE, SITE_DIR, NginxFront, nginx_path
from instanceapi.testing.harness import ServiceProcess
from instanceapi.testing.pki import ThrowAwayCA
from tests.fakes import new_uuid, require_tool

ALLOWED, REFUSED = "127.0.0.2", "127.0.0.3"  # client addresses (any 127/8 works on Linux)
SLOW_CLIENTS = 200


@pytest.fixture(scope="module")
def nginx() -> str:
    return nginx_path() or require_tool("nginx")


@pytest.fixture(scope="module")
def cloud():
    with SimulatedCloud() as cloud:
        yield cloud


@pytest.fixture(scope="module")
def demo(cloud):
    return seed_demo(cloud)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    ca = ThrowAwayCA(directory)
    stranger = ThrowAwayCA(directory, "stranger CA")
    return {
        "ca": ca,
        "server": ca.issue_server(),
        "client": ca.issue_client(),
        "stranger": stranger,
        "stranger_client": stranger.issue_client(),
    }


@pytest.fixture(scope="module")
def service(cloud, demo, tmp_path_factory):
    env = harness.service_env(
        cloud,
        tmp_path_factory.mktemp("svc"),
        # nginx reaches Gunicorn from 127.0.0.1, which may ask itself too (readiness).
        INSTANCEAPI_ALLOW_CIDRS=f"127.0.0.1/32,{ALLOWED}/32",
        INSTANCEAPI_FORWARDED_ALLOW_IPS="127.0.0.1",
    )
    with ServiceProcess(env, workers=2, ready_path="/readyz") as service:
        yield service


def upstream(service: ServiceProcess) -> str:
    return service.url.removeprefix("http://")


@pytest.fixture(scope="module")
def front(nginx, service, pki):
    with NginxFront(upstream(service), pki["server"]) as front:
        yield front


@pytest.fixture(scope="module")
def mtls_front(nginx, service, pki):
    with NginxFront(upstream(service), pki["server"], client_ca=pki["ca"].cert) as front:
        yield front


def get(front: NginxFront, path: str, pki, timeout: float = 30, **kwargs) -> requests.Response:
    return requests.get(front.url + path, verify=str(pki["ca"].cert), timeout=timeout, **kwargs)


def ask(
    port: int,
    path: str,
    *,
    source: str = ALLOWED,
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """GET `path` from 127.0.0.1:`port` with the client address `source`."""
    kind = http.client.HTTPSConnection if context else http.client.HTTPConnection
    extra = {"context": context} if context else {}
    connection = kind("127.0.0.1", port, timeout=30, source_address=(source, 0), **extra)
    try:
        connection.request("GET", path, headers=headers or {})
        answer = connection.getresponse()
        return answer.status, answer.headers, answer.read()
    finally:
        connection.close()


def client_context(pki, client: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["ca"].cert))
    if client:
        context.load_cert_chain(str(pki[client].cert), str(pki[client].key))
    return context


# -- the contract, through the front ----------------------------------------------------------


def test_the_check_contract_through_the_front(front, pki, demo):
    existing = get(front, f"/check/{demo['existing'][0]}", pki)
    assert existing.status_code == 200
    assert existing.headers["Instance-Exists"] == "true"
    deleted = get(front, f"/check/{demo['deleted'][0]}", pki)
    assert deleted.status_code == 404
    assert deleted.headers["Instance-Exists"] == "false"
    assert deleted.json()["exists"] is False
    invalid = get(front, "/check/not-a-uuid", pki)
    assert invalid.status_code == 400
    assert "Instance-Exists" not in invalid.headers
    head = requests.head(
        f"{front.url}/check/{demo['deleted'][0]}", verify=str(pki["ca"].cert), timeout=30
    )
    assert (head.status_code, head.content, head.headers["Instance-Exists"]) == (404, b"", "false")


def test_bulk_post_through_the_front(front, pki, demo):
    uuids = [demo["existing"][0], demo["deleted"][0], "nope", *(new_uuid() for _ in range(997))]
    answer = requests.post(
        f"{front.url}/check", json={"uuids": uuids}, verify=str(pki["ca"].cert), timeout=60
    )
    assert answer.status_code == 200
    results = answer.json()["results"]
    assert len(results) == 1000  # the whole answer, buffered by nginx
    assert [r["code"] for r in results[:3]] == [200, 404, 400]


def test_request_ids_pass_through_or_are_set(front, pki, demo):
    given = get(front, "/check/not-a-uuid", pki, headers={"X-Request-ID": "satellite-run.42"})
    assert given.headers["X-Request-ID"] == "satellite-run.42"
    made = get(front, "/check/not-a-uuid", pki).headers["X-Request-ID"]
    assert len(made) == 32  # nginx's $request_id, which Gunicorn echoes
    # An id the service would not echo is replaced at the front: both logs agree.
    odd = get(front, "/check/not-a-uuid", pki, headers={"X-Request-ID": "a b"})
    assert odd.headers["X-Request-ID"] != "a b"
    log = front.access_log
    assert "rid=satellite-run.42" in log
    assert f"rid={made}" in log
    assert f"rid={odd.headers['X-Request-ID']}" in log


def test_nginx_never_answers_404_when_the_service_is_unreachable(nginx, pki, demo):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))  # bound, never listening: connection refused
        address = f"127.0.0.1:{unused.getsockname()[1]}"
        with NginxFront(address, pki["server"]) as front:
            answer = get(front, f"/check/{demo['deleted'][0]}", pki)
    assert answer.status_code == 502
    assert "Instance-Exists" not in answer.headers


# -- TLS ------------------------------------------------------------------------------------------


def test_the_server_certificate_is_verified(front, pki, demo):
    assert get(front, f"/check/{demo['existing'][0]}", pki).status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(front.url + "/healthz", verify=str(pki["stranger"].cert), timeout=30)


def test_mutual_tls_refuses_clients_without_a_trusted_certificate(mtls_front, pki, demo):
    path = f"/check/{demo['existing'][0]}"
    status, headers, body = ask(mtls_front.port, path, context=client_context(pki))
    assert status == 400
    assert b"No required SSL certificate was sent" in body
    assert "X-Request-ID" not in headers  # refused by nginx: the service never saw it
    status, _, body = ask(mtls_front.port, path, context=client_context(pki, "stranger_client"))
    assert status == 400
    assert b"SSL certificate error" in body
    status, _, _ = ask(mtls_front.port, path, context=client_context(pki, "client"))
    assert status == 200


def test_the_reaper_presents_its_client_certificate(mtls_front, pki, demo, monkeypatch):
    # requests lets this variable override a session's CA bundle unless asked per request.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki["stranger"].cert))
    ca, cert = str(pki["ca"].cert), (str(pki["client"].cert), str(pki["client"].key))
    with_cert = ServiceClient(mtls_front.url, build_session(ca_bundle=ca, client_cert=cert))
    assert with_cert.check_one(demo["deleted"][0]).answer is Answer.ABSENT
    assert with_cert.check_many([demo["existing"][0]])[demo["existing"][0]].answer is Answer.PRESENT
    without = ServiceClient(mtls_front.url, build_session(ca_bundle=ca))
    assert without.check_one(demo["deleted"][0]).answer is Answer.UNKNOWN  # 400: kept
    assert without.readiness() is not None


# -- slow clients -------------------------------------------------------------------------------


@contextlib.contextmanager
def slow_clients(port: int, context: ssl.SSLContext, count: int) -> Iterator[list[socket.socket]]:
    """Hold `count` connections: half send half a request line over TLS, half say nothing.

    The silent ones are what a port scanner, or a load balancer's TCP check, leaves.
    """
    held: list[socket.socket] = []
    try:
        for number in range(count):
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            if number % 2:
                held.append(raw)
                continue
            tls = context.wrap_socket(raw, server_hostname="localhost")
            tls.sendall(b"GET /check/")
            held.append(tls)
        yield held
    finally:
        for connection in held:
            connection.close()


def still_open(connection: socket.socket) -> bool:
    connection.setblocking(False)
    try:
        return connection.recv(1) != b""  # data would be an answer: not what we held
    except (ssl.SSLWantReadError, BlockingIOError):
        return True
    except OSError:
        return False
    finally:
        connection.setblocking(True)


def test_slow_clients_do_not_delay_a_normal_check(front, pki, demo):
    uuid = demo["existing"][0]
    with slow_clients(front.port, client_context(pki), SLOW_CLIENTS) as held:
        for _ in range(5):
            # 1 s is generous for a check answered from the index; without the
            # front, far fewer such connections make Gunicorn answer nobody.
            assert get(front, f"/check/{uuid}", pki, timeout=1).status_code == 200
        assert sum(still_open(c) for c in held) == SLOW_CLIENTS


# -- sizes --------------------------------------------------------------------------------------


def refused_by_nginx(answer: requests.Response) -> bool:
    """Whether nginx answered itself: its error page, and no request id from the app."""
    return "<center>nginx</center>" in answer.text and "X-Request-ID" not in answer.headers


def test_oversized_header_lines_and_request_lines_are_refused_by_the_front(front, pki):
    header = get(front, "/check/not-a-uuid", pki, headers={"X-Padding": "a" * 3000})
    assert header.status_code == 400
    assert "Request Header Or Cookie Too Large" in header.text
    assert refused_by_nginx(header)
    line = get(front, "/check/" + "a" * 3000, pki)
    assert line.status_code == 414
    assert refused_by_nginx(line)
    # Under the front's limits, the service answers (and echoes a request id).
    fits = get(front, "/check/not-a-uuid", pki, headers={"X-Padding": "a" * 1500})
    assert fits.status_code == 400
    assert "X-Request-ID" in fits.headers
    # nginx has no limit on the number of header fields: Gunicorn's (50) refuses.
    many = get(front, "/check/not-a-uuid", pki, headers={f"X-H{n}": "v" for n in range(60)})
    assert many.status_code == 431
    assert not refused_by_nginx(many)


def test_oversized_bodies_are_413_at_the_front(front, pki):
    body = json.dumps({"uuids": [new_uuid()]}).encode() + b" " * MAX_BULK_BYTES
    assert len(body) > MAX_BULK_BYTES
    url, verify = front.url + "/check", str(pki["ca"].cert)
    headers = {"Content-Type": "application/json"}
    sized = requests.post(url, data=body, headers=headers, verify=verify, timeout=60)
    assert sized.status_code == 413
    assert refused_by_nginx(sized)
    chunked = requests.post(url, data=iter([body]), headers=headers, verify=verify, timeout=60)
    assert chunked.status_code == 413
    assert refused_by_nginx(chunked)
    limit = body[:MAX_BULK_BYTES]
    at_limit = requests.post(url, data=limit, headers=headers, verify=verify, timeout=60)
    assert at_limit.status_code == 200
    assert at_limit.json()["count"] == 1


# -- who is asking ------------------------------------------------------------------------------


def test_the_allowlist_sees_the_client_the_front_forwards(front, pki, demo):
    path, context = f"/check/{demo['existing'][0]}", client_context(pki)
    assert ask(front.port, path, source=ALLOWED, context=context)[0] == 200
    assert ask(front.port, path, source=REFUSED, context=context)[0] == 403
    # A client cannot claim an allowed address: the front replaces the header.
    spoof = {"X-Forwarded-For": ALLOWED}
    assert ask(front.port, path, source=REFUSED, headers=spoof, context=context)[0] == 403
    assert f"{REFUSED} [" in front.access_log


def test_the_service_trusts_x_forwarded_for_only_from_the_front_address(service, demo):
    port = int(service.url.rsplit(":", 1)[1])
    path = f"/check/{demo['existing'][0]}"
    assert ask(port, path, source=REFUSED, headers={"X-Forwarded-For": ALLOWED})[0] == 403
    assert ask(port, path, source="127.0.0.1", headers={"X-Forwarded-For": REFUSED})[0] == 403
    assert ask(port, path, source="127.0.0.1", headers={"X-Forwarded-For": ALLOWED})[0] == 200


def test_the_front_runs_the_shipped_directives_with_only_paths_and_ports_replaced(front):
    shipped = (SITE_DIR / SITE).read_text().splitlines()
    ran = (front.prefix / "conf.d" / SITE).read_text().splitlines()
    assert len(ran) == len(shipped)
    pairs = zip(shipped, ran, strict=True)
    changed = [(old, new) for old, new in pairs if old != new and not old.lstrip().startswith("#")]
    # listen, upstream server, certificate, key, include and both log lines.
    assert len(changed) == 7
    for old, new in changed:
        assert old.split()[0] == new.split()[0]  # the same directive, another value
