"""Hostile input over HTTP: every request gets a 4xx with a clear message; no worker dies.

Real Gunicorn, real sockets: some of these requests (NUL bytes, raw UTF-8 in
the request line, lying Content-Length) cannot be sent by a polite client, so
they are written to the socket by hand.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import requests

from instanceapi.testing.harness import ServiceProcess
from tests.fakes import new_uuid

MAX_BULK_BYTES = 256 * 1024


def workers(service: ServiceProcess) -> set[int]:
    """Return the pids of the master's worker processes."""
    return service.worker_pids()


@pytest.fixture
def same_workers(service, demo) -> Iterator[None]:
    """Fail the test if a worker died (or was replaced) while it ran, or answers wrongly after."""
    before = workers(service)
    assert len(before) == 2
    yield
    assert workers(service) == before, "a worker died and was replaced"
    assert requests.get(f"{service.url}/healthz", timeout=10).status_code == 200
    answer = requests.get(f"{service.url}/check/{demo['existing'][0]}", timeout=30)
    assert answer.status_code == 200


def raw_request(service: ServiceProcess, data: bytes, *, timeout: float = 10.0) -> bytes:
    """Send bytes as they are and return everything the service answers."""
    host, port = service.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def assert_clear_400(response: requests.Response, *, mentions: str = "UUID") -> None:
    """A 400 whose body says what is wrong, and that is never an answer about an instance."""
    assert response.status_code == 400, response.text[:300]
    assert "Instance-Exists" not in response.headers
    body = response.json()
    assert body["title"]
    assert mentions in body["title"] + body.get("description", "")
    assert len(response.content) < 1000  # a long input is not echoed back whole


# -- the path -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("same_workers")
@pytest.mark.parametrize("length", [100, 1000, 1990])
def test_long_paths_under_the_request_line_limit_are_400(service, length: int) -> None:
    assert_clear_400(requests.get(f"{service.url}/check/{'7' * length}", timeout=10))


@pytest.mark.usefixtures("same_workers")
@pytest.mark.parametrize("length", [2100, 8000, 60000])
def test_paths_over_the_request_line_limit_are_refused_by_gunicorn(service, length: int) -> None:
    answer = raw_request(service, f"GET /check/{'a' * length} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status_of(answer) == 414
    assert b"Request Line is too large" in answer


@pytest.mark.usefixtures("same_workers")
def test_percent_encoded_ascii_digits_are_the_same_uuid(service, demo) -> None:
    existing = demo["existing"][0]
    encoded = "".join(f"%{ord(c):02X}" for c in existing)
    answer = requests.get(f"{service.url}/check/{encoded}", timeout=30)
    assert answer.status_code == 200
    assert answer.json()["uuid"] == existing


@pytest.mark.usefixtures("same_workers")
@pytest.mark.parametrize(
    "char",
    [
        "\uff10",  # FULLWIDTH DIGIT ZERO
        "\u0660",  # ARABIC-INDIC DIGIT ZERO
        "\u0966",  # DEVANAGARI DIGIT ZERO
        "\U0001d7ce",  # MATHEMATICAL BOLD DIGIT ZERO
        "\u00b2",  # SUPERSCRIPT TWO
        "\u0430",  # CYRILLIC SMALL LETTER A
        "\uff41",  # FULLWIDTH LATIN SMALL LETTER A
    ],
)
def test_unicode_look_alike_digits_are_400(service, demo, char: str) -> None:
    existing = demo["existing"][0]
    look_alike = existing[:-1] + char
    answer = requests.get(f"{service.url}/check/{quote(look_alike)}", timeout=10)
    assert_clear_400(answer)
    # Unencoded UTF-8 in the request line, as a careless client would send it.
    raw = f"GET /check/{look_alike} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert status_of(raw_request(service, raw.encode())) == 400


@pytest.mark.usefixtures("same_workers")
def test_unicode_hyphens_are_400(service, demo) -> None:
    existing = demo["existing"][0]
    for dash in ("\u2010", "\u2011", "\u2212", "\uff0d"):
        assert_clear_400(
            requests.get(f"{service.url}/check/{quote(existing.replace('-', dash))}", timeout=10)
        )


@pytest.mark.usefixtures("same_workers")
@pytest.mark.parametrize("where", ["alone", "before", "after", "inside"])
def test_percent_encoded_nul_bytes_are_400(service, demo, where: str) -> None:
    existing = demo["existing"][0]
    path = {
        "alone": "%00",
        "before": f"%00{existing}",
        "after": f"{existing}%00",
        "inside": f"{existing[:8]}%00{existing[9:]}",
    }[where]
    assert_clear_400(requests.get(f"{service.url}/check/{path}", timeout=10))


@pytest.mark.usefixtures("same_workers")
def test_raw_nul_and_control_bytes_in_the_request_line_are_400(service, demo) -> None:
    existing = demo["existing"][0].encode()
    for bad in (b"\x00", b"\x01", b"\x7f", b"\xff\xfe"):
        request = (
            b"GET /check/" + existing + bad + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert status_of(raw_request(service, request)) == 400, bad


@pytest.mark.usefixtures("same_workers")
def test_broken_percent_encoding_is_400(service) -> None:
    for path in ("%", "%zz", "%e2%80", "%c0%af", "%ed%a0%80"):
        answer = requests.get(f"{service.url}/check/{path}", timeout=10)
        assert answer.status_code == 400, path


@pytest.mark.usefixtures("same_workers")
def test_dot_segments_and_slashes_never_reach_another_route(service, demo) -> None:
    existing = demo["existing"][0]
    for path in (f"/check/{existing}/..", f"/check/..%2F{existing}", f"/check/%2F{existing}"):
        assert requests.get(service.url + path, timeout=10).status_code == 400, path


@pytest.mark.usefixtures("same_workers")
def test_too_many_or_too_large_headers_are_refused(service, demo) -> None:
    path = f"/check/{demo['existing'][0]}"
    many = "".join(f"X-H{i}: v\r\n" for i in range(200))
    answer = raw_request(service, f"GET {path} HTTP/1.1\r\n{many}\r\n".encode())
    assert status_of(answer) == 431
    assert b"limit request headers fields" in answer
    huge = "X-Big: " + "v" * 20000 + "\r\n"
    answer = raw_request(service, f"GET {path} HTTP/1.1\r\n{huge}\r\n".encode())
    assert status_of(answer) in (400, 431)
    assert b"Content-Type: text/html" in answer


# -- the bulk body --------------------------------------------------------------------------------


def post(service: ServiceProcess, body: bytes, content_type: str | None = "application/json"):
    headers = {"Content-Type": content_type} if content_type else {}
    return requests.post(f"{service.url}/check", data=body, headers=headers, timeout=60)


@pytest.mark.usefixtures("same_workers")
def test_a_body_over_the_limit_is_413(service) -> None:
    body = json.dumps({"uuids": [new_uuid() for _ in range(8000)]}).encode()
    assert len(body) > MAX_BULK_BYTES
    answer = post(service, body)
    assert answer.status_code == 413
    assert "at most" in answer.json()["description"]


@pytest.mark.usefixtures("same_workers")
def test_a_lying_content_length_is_413_at_once(service) -> None:
    request = (
        b"POST /check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 999999999\r\nConnection: close\r\n\r\n{}"
    )
    assert status_of(raw_request(service, request)) == 413


@pytest.mark.usefixtures("same_workers")
def test_too_many_uuids_is_413(service) -> None:
    answer = post(service, json.dumps({"uuids": ["x"] * 1001}).encode())
    assert answer.status_code == 413
    assert "1001 UUIDs" in answer.json()["description"]


@pytest.mark.usefixtures("same_workers")
@pytest.mark.parametrize("depth", [10_000, 100_000])
def test_very_deep_nesting_is_400(service, depth: int) -> None:
    body = b'{"uuids": [' + b"[" * depth + b"]" * depth + b"]}"
    assert len(body) <= MAX_BULK_BYTES
    answer = post(service, body)
    assert answer.status_code == 400
    assert answer.json()["title"] == "Invalid JSON"


@pytest.mark.usefixtures("same_workers")
@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"null",
        b"[]",
        b'"uuids"',
        b'{"uuids": null}',
        b'{"uuids": {"a": 1}}',
        b'{"uuids": "efe39f40-f70d-4e3c-98c9-550b7baff3a3"}',
        b'{"UUIDS": []}',
        b"\xff\xfe{\x00}\x00",
        b'{"uuids": [1' + b"0" * 5000 + b"]}",  # over Python's int digit limit
    ],
)
def test_malformed_bulk_bodies_are_400(service, body: bytes) -> None:
    answer = post(service, body)
    assert answer.status_code == 400, answer.text[:300]
    assert answer.json()["description"]


@pytest.mark.usefixtures("same_workers")
def test_hostile_items_are_per_item_400s(service, demo) -> None:
    items = [
        None,
        True,
        1e308,
        -0.0,
        {"uuid": demo["existing"][0]},
        [demo["existing"][0]],
        "",
        "\x00",
        demo["existing"][0] + "\x00",
        demo["existing"][0][:-1] + "\uff10",
        "a" * 200_000,
        demo["existing"][0],
    ]
    answer = post(service, json.dumps(items and {"uuids": items}).encode())
    assert answer.status_code == 200
    results = answer.json()["results"]
    assert [r["code"] for r in results] == [400] * 11 + [200]
    assert all(len(r["detail"]) < 300 for r in results)


@pytest.mark.usefixtures("same_workers")
@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "application/xml",
        "json",
    ],
)
def test_wrong_content_types_are_415(service, demo, content_type: str | None) -> None:
    body = json.dumps({"uuids": [demo["existing"][0]]}).encode()
    answer = post(service, body, content_type)
    assert answer.status_code == 415
    assert "application/json" in answer.json()["description"]


@pytest.mark.usefixtures("same_workers")
def test_json_with_parameters_is_accepted(service, demo) -> None:
    body = json.dumps({"uuids": [demo["existing"][0]]}).encode()
    answer = post(service, body, "application/json; charset=utf-8")
    assert answer.status_code == 200


@pytest.mark.usefixtures("same_workers")
def test_methods_that_do_not_exist_are_405(service, demo) -> None:
    for method in ("PUT", "DELETE", "PATCH"):
        answer = requests.request(method, f"{service.url}/check/{demo['existing'][0]}", timeout=10)
        assert answer.status_code == 405, method
