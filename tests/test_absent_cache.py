"""Issue 9, item 3: cached absences never outlive contrary evidence.

A fresh index listing the UUID wins over a cached absence (evicted in this
worker and in the shared table, logged at ERROR, counted); cached absences
expire; ``Cache-Control: no-cache`` demands a new observation; ``instanceapi
reap`` always demands one.
"""

from __future__ import annotations

import logging
import threading

import pytest
import requests
from falcon import testing

from instanceapi.check.checker import Checker, RegionChecker
from instanceapi.check.store.absent import SharedAbsentCache
from instanceapi.config import RegionSpec, Settings
from instanceapi.http.app import create_app
from instanceapi.metrics import Metrics
from instanceapi.reap.service import ServiceClient
from instanceapi.uuids import byte_swapped
from instanceapi.verdict import Presence
from tests.fakes import FakeCloud, new_uuid

SETTINGS = Settings(regions=(RegionSpec("cloud"),))
CONFLICTS = "instanceapi_absence_conflicts_total"


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cloud(requests_mock) -> FakeCloud:
    return FakeCloud(requests_mock)


def worker(cloud: FakeCloud, shared: SharedAbsentCache, metrics: Metrics, **kwargs) -> Checker:
    return Checker(
        [RegionChecker(cloud.nova())],
        shared=shared,
        on_conflict=metrics.absence_conflicts.inc,
        **kwargs,
    )


def test_a_fresh_index_listing_the_uuid_wins_over_a_cached_absence(cloud, tmp_path, caplog):
    shared = SharedAbsentCache(tmp_path / "absent.sqlite3", 100)
    metrics = Metrics()
    checker = worker(cloud, shared, metrics)
    uuid = new_uuid()
    assert checker.check(uuid).presence is Presence.ABSENT  # recorded, rightly or not
    cloud.add(server_id=uuid)  # an upstream anomaly (or our bug): it is listed after all
    checker.regions[0].refresh_index()
    verdict = checker.check(uuid)
    assert (verdict.presence, verdict.source) == (Presence.PRESENT, "index")
    assert shared.get(uuid) is None and len(checker.absent) == 0
    assert metrics.registry.get_sample_value(CONFLICTS) == 1
    conflict = [r for r in caplog.records if "absence conflict" in r.getMessage()]
    assert [r.levelno for r in conflict] == [logging.ERROR]


def test_a_worker_whose_index_is_stale_drops_an_absence_another_index_contradicts(cloud, tmp_path):
    shared = SharedAbsentCache(tmp_path / "absent.sqlite3", 100)
    metrics = Metrics()
    stale = worker(cloud, shared, metrics)  # never refreshes its index
    fresh = worker(cloud, shared, metrics)
    uuid = new_uuid()
    assert stale.check(uuid).presence is Presence.ABSENT  # in its memory and the table
    cloud.add(server_id=uuid)
    fresh.regions[0].refresh_index()
    fresh.reconcile()  # what the refresher does after each refresh
    assert shared.get(uuid) is None
    assert metrics.registry.get_sample_value(CONFLICTS) == 1
    verdict = stale.check(uuid)  # asks Nova instead of replaying its copy
    assert (verdict.presence, verdict.source) == (Presence.PRESENT, "live")


def test_cached_absences_expire(cloud, tmp_path):
    clock = Clock()
    shared = SharedAbsentCache(tmp_path / "absent.sqlite3", 100, ttl=60.0, clock=clock)
    checker = worker(cloud, shared, Metrics(), absent_ttl=60.0, clock=clock)
    other = worker(cloud, shared, Metrics(), absent_ttl=60.0, clock=clock)
    uuid = new_uuid()
    assert checker.check(uuid).source == "live"
    clock.now += 59.0
    assert checker.check(uuid).source == "absent-cache"
    assert other.check(uuid).source == "absent-cache"
    clock.now += 2.0
    assert checker.check(uuid).source == "live"
    assert cloud.calls("GET", f"/servers/{uuid}") == 2


def test_no_cache_demands_a_new_observation_single_and_bulk(cloud):
    client = testing.TestClient(
        create_app(SETTINGS, checker=Checker([RegionChecker(cloud.nova())]))
    )
    uuid = new_uuid()
    assert client.simulate_get(f"/check/{uuid}").status_code == 404
    cached = client.simulate_get(f"/check/{uuid}")
    assert (cached.status_code, cached.json["source"]) == (404, "absent-cache")
    fresh = client.simulate_get(f"/check/{uuid}", headers={"Cache-Control": "no-cache"})
    assert (fresh.status_code, fresh.json["source"]) == (404, "live")
    bulk = client.simulate_post(
        "/check", json={"uuids": [uuid]}, headers={"Cache-Control": "max-age=0, No-Cache"}
    )
    assert bulk.json["results"][0]["source"] == "live"
    assert cloud.calls("GET", f"/servers/{uuid}") == 3


def test_no_cache_lookups_stay_bounded_503_never_404(cloud):
    busy = cloud.add()
    checker = Checker([RegionChecker(cloud.nova())], max_live_lookups=1, slot_wait=0.05)
    client = testing.TestClient(create_app(SETTINGS, checker=checker))
    absent = new_uuid()
    assert client.simulate_get(f"/check/{absent}").status_code == 404
    entered, release = threading.Event(), threading.Event()

    def slow(request, context):
        entered.set()
        release.wait(5)
        return {"server": cloud.servers[busy]}

    cloud.mocker.get(f"{cloud.compute_url}/servers/{busy}", json=slow)
    holder = threading.Thread(target=client.simulate_get, args=(f"/check/{busy}",))
    holder.start()
    try:
        assert entered.wait(5)
        refused = client.simulate_get(f"/check/{absent}", headers={"Cache-Control": "no-cache"})
        bulk = client.simulate_post(
            "/check", json={"uuids": [absent]}, headers={"Cache-Control": "no-cache"}
        )
    finally:
        release.set()
        holder.join(5)
    assert (refused.status_code, refused.headers["Instance-Exists"]) == (503, "unknown")
    assert bulk.json["results"][0]["code"] == 503


def test_reap_demands_fresh_evidence_for_every_check(requests_mock):
    url = "http://instanceapi.test"
    uuid = new_uuid()
    body = {"uuid": uuid, "exists": False}
    json_type = {"Content-Type": "application/json"}
    requests_mock.get(
        f"{url}/check/{uuid}",
        status_code=404,
        json=body,
        headers={"Instance-Exists": "false", **json_type},
    )
    results = {"count": 1, "results": [{**body, "input": uuid, "code": 404}]}
    requests_mock.post(f"{url}/check", json=results, headers=json_type)
    client = ServiceClient(url, requests.Session())
    assert client.check_many([uuid])[uuid].answer.name == "ABSENT"
    assert client.check_one(uuid).answer.name == "ABSENT"
    sent = [r for r in requests_mock.request_history if "/check" in r.url]
    assert [r.method for r in sent] == ["POST", "GET"]
    assert all(r.headers.get("Cache-Control") == "no-cache" for r in sent)


def test_reconcile_also_sees_the_byte_swapped_twin_listed(cloud, tmp_path):
    shared = SharedAbsentCache(tmp_path / "absent.sqlite3", 100)
    metrics = Metrics()
    checker = worker(cloud, shared, metrics)
    twin = new_uuid()  # the instance as Nova knows it
    asked = byte_swapped(twin)  # as dmidecode printed it
    assert checker.check(asked).presence is Presence.ABSENT  # both forms 404: recorded
    cloud.add(server_id=twin)
    checker.regions[0].refresh_index()
    checker.reconcile()
    assert len(checker.absent) == 0 and shared.uuids() == []
    assert metrics.registry.get_sample_value(CONFLICTS) == 1
