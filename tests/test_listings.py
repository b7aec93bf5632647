"""Listings that never end, or carry garbage (issue 9, item 5): doubt for that target only.

requests-mock at Nova's HTTP boundary, real keystoneauth1 + novaclient.
"""

from __future__ import annotations

import pytest
from falcon import testing

from instanceapi.check.checker import Checker, RegionChecker
from instanceapi.check.refresher.loop import Refresher
from instanceapi.http.app import create_app
from instanceapi.metrics import Metrics
from instanceapi.openstack import UpstreamError
from tests.fakes import SETTINGS, FakeCloud, new_uuid

LISTING = r".*/servers/detail.*"


def page(*servers: dict[str, object], more: bool = True) -> dict[str, object]:
    body: dict[str, object] = {"servers": list(servers)}
    if more:
        body["servers_links"] = [{"rel": "next", "href": "http://nova.example/next"}]
    return body


def server(uuid: str | None = None) -> dict[str, object]:
    return {"id": uuid or new_uuid(), "status": "ACTIVE", "tenant_id": "0" * 32}


@pytest.fixture
def cloud(requests_mock):
    return FakeCloud(requests_mock)


def test_a_listing_whose_marker_does_not_advance_stops(cloud):
    same = page(server(), server())
    # A proxy replaying page 1 forever; after 20 replays, a 500 (bounds the old loop).
    cloud.fail(LISTING, [{"json": same}] * 20 + [{"status_code": 500}])
    with pytest.raises(UpstreamError) as caught:
        list(cloud.nova().list_servers())
    assert "did not advance" in caught.value.reason
    assert cloud.calls("GET", "/servers/detail") == 2


def test_a_listing_past_the_page_bound_stops(cloud):
    pages = [{"json": page(server())} for _ in range(10)]
    cloud.fail(LISTING, [*pages, {"status_code": 500}])  # a 500 bounds the old loop
    nova = cloud.nova()
    nova.max_listing_pages = 4
    with pytest.raises(UpstreamError) as caught:
        list(nova.list_servers())
    assert "after 4 pages" in caught.value.reason
    assert cloud.calls("GET", "/servers/detail") == 4


@pytest.mark.parametrize(
    "body",
    [
        page("id-of-nothing", more=False),  # a string that contains "id"
        page(["id"], more=False),
        page(42, more=False),
        page(None, more=False),
        page({"id": 7, "status": "ACTIVE"}, more=False),
        page({"status": "ACTIVE"}, more=False),
        page({"id": new_uuid(), "status": ["ACTIVE"]}, more=False),
        {"servers": "none"},
        {"servers": {"id": new_uuid()}},
    ],
)
def test_a_malformed_page_is_an_upstream_error(cloud, body):
    cloud.fail(LISTING, json=body)
    with pytest.raises(UpstreamError) as caught:
        list(cloud.nova().list_servers())
    assert "GET /servers/detail" in caught.value.reason


def test_garbage_in_the_listing_is_doubt_for_that_target_only(requests_mock):
    """Listing rule (a reader who may list all projects): one cloud's garbage, another's fine."""
    bad = FakeCloud(requests_mock, name="bad", roles=("reader",), can_list_all=True)
    good = FakeCloud(requests_mock, name="good", roles=("reader",), can_list_all=True)
    metrics = Metrics()
    checker = Checker([RegionChecker(bad.nova()), RegionChecker(good.nova())])
    now = [0.0]
    refresher = Refresher(checker.regions, metrics=metrics, clock=lambda: now[0])
    refresher.run_once()  # both fine: the listing rule is established
    bad.fail(r".*nova\.bad-regionone.*/servers/detail.*", json=page("id-like junk", more=False))
    listing = good.compute_url + "/servers/detail"
    listed = good.calls("GET", listing)
    now[0] += 15.0
    refresher.run_once()
    failures = metrics.registry.get_sample_value(
        "instanceapi_index_refresh_failures_total", {"target": "bad/RegionOne"}
    )
    assert failures == 1
    assert good.calls("GET", listing) == listed + 1  # the refresh went on to the next target
    client = testing.TestClient(create_app(SETTINGS, checker=checker, metrics=metrics))
    answer = client.simulate_get(f"/check/{new_uuid()}")
    assert answer.status_code == 500
    assert answer.headers["Instance-Exists"] == "unknown"
    assert "malformed page" in answer.json["detail"]
