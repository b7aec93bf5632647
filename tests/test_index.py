"""The fast path: index, absent cache, shared lookups, staleness; counts, never times."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest
from falcon import testing

from instanceapi.check.checker import Checker, RegionChecker
from instanceapi.check.refresher.loop import Refresher
from instanceapi.http.app import create_app
from tests.fakes import SETTINGS, FakeCloud, new_uuid


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def cloud(requests_mock):
    cloud = FakeCloud(requests_mock, page_size=50)
    cloud.add(project_id="0" * 32)  # lets the visibility probe prove by-id
    return cloud


@dataclass
class Rig:
    checker: Checker
    refresher: Refresher
    client: testing.TestClient


def make(cloud, clock, **kwargs):
    region = RegionChecker(cloud.nova(), clock=clock, **kwargs)
    checker = Checker([region])
    refresher = Refresher(checker.regions, interval=15.0, clock=clock)
    client = testing.TestClient(create_app(SETTINGS, checker=checker))
    return Rig(checker, refresher, client)


def shows(cloud) -> int:
    return sum(
        1
        for r in cloud.mocker.request_history
        if r.method == "GET" and "/servers/" in r.url and "/servers/detail" not in r.url
    )


def lists(cloud) -> int:
    return cloud.calls("GET", "/servers/detail")


def test_indexed_instance_costs_no_upstream_call(cloud, clock):
    ids = [cloud.add() for _ in range(120)]
    rig = make(cloud, clock)
    rig.refresher.run_once()
    assert len(rig.checker.regions[0].index) == 121  # every page was read
    before = len(cloud.mocker.request_history)
    for uuid in ids:
        answer = rig.client.simulate_get(f"/check/{uuid}")
        assert answer.status_code == 200
        assert answer.json["source"] == "index"
    assert len(cloud.mocker.request_history) == before
    assert answer.json["index_age_seconds"] == {"cloud/RegionOne": 0.0}


def test_instance_created_after_the_refresh_is_200_never_404(cloud, clock):
    rig = make(cloud, clock)
    rig.refresher.run_once()
    late = cloud.add()
    answer = rig.client.simulate_get(f"/check/{late}")
    assert answer.status_code == 200
    assert answer.json["source"] == "live"


def test_refresh_adds_new_and_drops_deleted(cloud, clock):
    gone = cloud.add()
    rig = make(cloud, clock)
    rig.refresher.run_once()
    index = rig.checker.regions[0].index
    assert index.peek(gone) == "ACTIVE"
    new = cloud.add()
    cloud.servers[gone]["status"] = "DELETED"
    clock.now += 15
    rig.refresher.run_once()
    assert cloud.calls("GET", "changes-since=") == 1  # incremental, not a full listing
    assert index.peek(new) == "ACTIVE"
    assert index.peek(gone) == "DELETED"
    answer = rig.client.simulate_get(f"/check/{gone}")
    assert answer.status_code == 404
    assert "a changes-since listing at" in answer.json["targets"][0]["detail"]


def test_deleted_instance_is_200_until_refresh_then_404(cloud, clock):
    uuid = cloud.add()
    rig = make(cloud, clock)
    rig.refresher.run_once()
    cloud.servers[uuid]["status"] = "DELETED"
    assert rig.client.simulate_get(f"/check/{uuid}").status_code == 200  # index, 15 s at most
    clock.now += 15
    rig.refresher.run_once()
    assert rig.client.simulate_get(f"/check/{uuid}").status_code == 404


def test_stale_index_falls_back_to_live_lookups(cloud, clock):
    uuid = cloud.add()
    rig = make(cloud, clock, max_index_age=300.0)
    rig.refresher.run_once()
    cloud.fail(r".*/servers/detail", status_code=500, text="down")
    clock.now += 301
    rig.refresher.run_once()  # fails: keeps the last good index, but it is now too old
    assert rig.checker.regions[0].index.peek(uuid) == "ACTIVE"
    before = shows(cloud)
    answer = rig.client.simulate_get(f"/check/{uuid}")
    assert (answer.status_code, answer.json["source"]) == (200, "live")
    assert shows(cloud) == before + 1
    assert answer.json["index_age_seconds"]["cloud/RegionOne"] == 301.0
    cloud.fail(r".*/servers/[0-9a-f-]{36}$", status_code=503, text="nova down")
    assert rig.client.simulate_get(f"/check/{uuid}").status_code == 500


def test_failed_refresh_backs_off(cloud, clock):
    rig = make(cloud, clock)
    cloud.fail(r".*/servers/detail", status_code=500, text="down")
    delays = []
    for _ in range(4):
        delays.append(rig.refresher.run_once())
        clock.now += delays[-1]
    assert delays == [15.0, 30.0, 60.0, 120.0]
    assert rig.checker.regions[0].index.failures == 4


def test_absent_uuid_is_remembered(cloud, clock):
    rig = make(cloud, clock)
    rig.refresher.run_once()
    absent = new_uuid()
    assert rig.client.simulate_get(f"/check/{absent}").status_code == 404
    before = len(cloud.mocker.request_history)
    repeat = rig.client.simulate_get(f"/check/{absent}")
    assert (repeat.status_code, repeat.json["source"]) == (404, "absent-cache")
    assert repeat.headers["Instance-Exists"] == "false"
    assert len(cloud.mocker.request_history) == before


def test_unknown_answers_are_not_remembered(cloud, clock):
    rig = make(cloud, clock)
    cloud.fail(r".*/servers/[0-9a-f-]{36}$", status_code=500, text="boom")
    uuid = new_uuid()
    assert rig.client.simulate_get(f"/check/{uuid}").status_code == 500
    assert rig.client.simulate_get(f"/check/{uuid}").status_code == 500
    assert len(rig.checker.absent) == 0


def test_absent_cache_is_bounded(cloud, clock):
    region = RegionChecker(cloud.nova(), clock=clock)
    checker = Checker([region], absent_cache_size=3)
    for _ in range(5):
        checker.check(new_uuid())
    assert len(checker.absent) == 3


def test_concurrent_checks_of_one_uuid_share_one_lookup(cloud, clock):
    uuid = cloud.add()
    rig = make(cloud, clock)
    rig.checker.check(new_uuid())  # establishes visibility and the session first
    release = threading.Event()
    server = cloud.servers[uuid]

    def slow_show(request, context):
        release.wait(5)
        return {"server": server}

    cloud.mocker.get(f"{cloud.compute_url}/servers/{uuid}", json=slow_show)
    before = shows(cloud)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(rig.checker.check(uuid))) for _ in range(10)
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.2)  # let every thread join the flight (correctness does not depend on it)
    release.set()
    for thread in threads:
        thread.join(10)
    assert [r.presence.value for r in results] == ["present"] * 10
    assert shows(cloud) - before == 1


def test_bulk_matches_single_checks_item_by_item(cloud, clock):
    present = [cloud.add(status) for status in ("ACTIVE", "SHUTOFF", "SOFT_DELETED")]
    gone = cloud.add()
    rig = make(cloud, clock)
    cloud.servers[gone]["status"] = "DELETED"
    rig.refresher.run_once()
    unknown = cloud.add("UNKNOWN")
    items = [*present, gone, new_uuid(), present[0].upper(), "junk", 42, unknown, ""]
    bulk = rig.client.simulate_post("/check", json={"uuids": items})
    assert bulk.status_code == 200
    results = bulk.json["results"]
    assert [r["input"] for r in results] == items
    for item, result in zip(items, results, strict=True):
        if isinstance(item, str) and item != "junk" and item:
            single = rig.client.simulate_get(f"/check/{item}")
            assert result["code"] == single.status_code, item
            assert result["exists"] == single.json["exists"], item
            assert result["uuid"] == single.json["uuid"]
        else:
            assert (result["code"], result["exists"]) == (400, None)
    assert [r["code"] for r in results] == [200, 200, 200, 404, 404, 200, 400, 400, 500, 400]


def test_bulk_upstream_failure_is_null_never_false(cloud, clock):
    rig = make(cloud, clock)
    cloud.fail(r".*/servers/[0-9a-f-]{36}$", status_code=503, text="busy")
    bulk = rig.client.simulate_post("/check", json={"uuids": [new_uuid() for _ in range(20)]})
    assert {r["exists"] for r in bulk.json["results"]} == {None}


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"json": {"uuids": ["x"] * 1001}}, 413),
        ({"body": "x" * 300_000, "content_type": "application/json"}, 413),
        ({"body": "not json", "content_type": "application/json"}, 400),
        ({"json": ["a", "b"]}, 400),
        ({"json": {"uuid": []}}, 400),
        ({"json": {"uuids": "0e6b8a4c-4c87-4b6a-9b1e-6c3f9a1d2e3f"}}, 400),
        ({"body": "[" * 5000 + "]" * 5000, "content_type": "application/json"}, 400),
        ({"body": '{"uuids": []}', "content_type": "text/plain"}, 415),
        ({"body": "", "content_type": "application/json"}, 411),  # no length, not terminated
    ],
)
def test_bulk_rejects_bad_requests_clearly(cloud, clock, kwargs, status):
    rig = make(cloud, clock)
    answer = rig.client.simulate_post("/check", **kwargs)
    assert answer.status_code == status
    assert answer.json["title"] and answer.json["description"]
    assert lists(cloud) + shows(cloud) == 0


def test_empty_bulk_is_an_empty_answer(cloud, clock):
    rig = make(cloud, clock)
    assert rig.client.simulate_post("/check", json={"uuids": []}).json == {
        "count": 0,
        "results": [],
    }


def test_refreshes_do_not_ping_keystone_each_time(cloud, clock):
    rig = make(cloud, clock, visibility_interval=300.0)
    for _ in range(10):  # 150 s of refreshes every 15 s
        rig.refresher.run_once()
        clock.now += 15
    pings = sum(
        1
        for r in cloud.mocker.request_history
        if r.method == "GET" and r.url.rstrip("/") == cloud.auth_url
    )
    assert pings == 1
    assert cloud.calls("POST", "/auth/tokens") == 1
    cloud.fail(r".*keystone.*", status_code=503, text="down")
    clock.now += 300
    rig.refresher.run_once()
    assert rig.checker.regions[0].readiness().startswith("Keystone")
