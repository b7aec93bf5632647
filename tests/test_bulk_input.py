"""Bulk items of every JSON type and content: a per-item 400, a bounded echo, valid JSON out."""

from __future__ import annotations

import json

import pytest
from falcon import testing

from instanceapi.check.checker import Checker, RegionChecker
from instanceapi.config import RegionSpec, Settings
from instanceapi.http.app import create_app
from tests.fakes import FakeCloud


def strict_json(data: bytes) -> object:
    """Parse as RFC 8259 JSON: UTF-8 only, no NaN/Infinity (Python's json allows them)."""

    def refuse(name: str) -> object:
        raise ValueError(f"{name} is not JSON")

    return json.loads(data.decode("utf-8"), parse_constant=refuse)


@pytest.fixture
def client(requests_mock):
    cloud = FakeCloud(requests_mock)
    checker = Checker([RegionChecker(cloud.nova())])
    client = testing.TestClient(create_app(Settings(regions=(RegionSpec("c"),)), checker=checker))
    client.existing = cloud.add()  # type: ignore[attr-defined]
    return client


def post_raw(client, body: bytes):
    return client.simulate_post("/check", body=body, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(
    "item",
    [
        b'"\\ud800"',  # a lone surrogate: UTF-8 cannot encode it
        b'"\\udfff\\ud800x"',
        b"NaN",
        b"Infinity",
        b"-Infinity",
        b"1e999999",
        b"-1e999999",
        b"1" + b"0" * 4000,  # a huge integer (under Python's digit limit)
        b'"' + b"a" * 200_000 + b'"',
        b'{"\\ud800": "\\udc00"}',
        b'["\\ud800"]',
        b"true",
        b"null",
        b"0.5",
    ],
)
def test_every_non_uuid_item_is_a_per_item_400_in_valid_json(client, item: bytes) -> None:
    body = b'{"uuids": [' + item + b', "' + client.existing.encode() + b'"]}'
    answer = post_raw(client, body)
    assert answer.status_code == 200
    results = strict_json(answer.content)["results"]  # type: ignore[index]
    assert [r["code"] for r in results] == [400, 200]
    assert results[0]["exists"] is None
    assert results[0]["source"] == "input"
    assert len(json.dumps(results[0])) < 600  # bounded: the echo and the detail


def test_a_long_invalid_item_is_echoed_once_and_bounded(client) -> None:
    answer = post_raw(client, json.dumps({"uuids": ["z" * 200_000]}).encode())
    assert len(answer.content) < 1000
    result = answer.json["results"][0]
    assert result["input"].endswith("...")
    assert len(result["input"]) == 80


def test_non_finite_numbers_are_echoed_as_strings(client) -> None:
    answer = post_raw(client, b'{"uuids": [NaN, 1e999999, -1e999999]}')
    results = strict_json(answer.content)["results"]  # type: ignore[index]
    assert [r["input"] for r in results] == ["NaN", "Infinity", "-Infinity"]


def test_a_valid_uuid_in_long_whitespace_is_answered_with_a_bounded_echo(client) -> None:
    item = " " * 100_000 + client.existing
    answer = post_raw(client, json.dumps({"uuids": [item]}).encode())
    result = answer.json["results"][0]
    assert result["code"] == 200
    assert len(result["input"]) <= 80
