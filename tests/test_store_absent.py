"""Absences shared between workers: one SQLite table, safe to lose, never a wrong 404."""

from __future__ import annotations

from falcon import testing

from instanceapi.check.checker import Checker
from instanceapi.check.region import RegionChecker
from instanceapi.check.store.absent import SharedAbsentCache
from instanceapi.check.store.layout import StoreLayout
from instanceapi.http.app import create_app
from instanceapi.verdict import Presence, Sighting, Verdict
from tests.fakes import SETTINGS, FakeCloud, new_uuid


def absent(uuid: str) -> Verdict:
    sighting = Sighting(
        "c/R", "c", "R", uuid, Presence.ABSENT, "c/R: Nova answered 404", rule="by-id"
    )
    return Verdict(uuid, Presence.ABSENT, (sighting,))


def test_one_worker_confirms_the_other_answers_without_asking(requests_mock, tmp_path):
    cloud = FakeCloud(requests_mock)
    path = tmp_path / "absent.sqlite3"
    workers = [
        Checker([RegionChecker(cloud.nova())], shared=SharedAbsentCache(path, 100))
        for _ in range(2)
    ]
    clients = [testing.TestClient(create_app(SETTINGS, checker=w)) for w in workers]
    uuid = new_uuid()
    assert clients[0].simulate_get(f"/check/{uuid}").status_code == 404
    before = len(requests_mock.request_history)
    answer = clients[1].simulate_get(f"/check/{uuid}")
    assert (answer.status_code, answer.json["source"]) == (404, "absent-cache")
    assert answer.headers["Instance-Exists"] == "false"
    assert answer.json["targets"][0]["rule"] == "by-id"
    assert len(requests_mock.request_history) == before  # no Keystone, no Nova


def test_another_target_set_gets_another_table(tmp_path):
    """After a reload with a region added, absences proven without it do not count."""
    one, two = "demo/RegionOne|http://k/v3|public", "demo/RegionTwo|http://k/v3|public"
    stores = [StoreLayout.for_targets(tmp_path, regions) for regions in ([one], [one, two])]
    for store in stores:
        store.create()
    old, new = (SharedAbsentCache(store.absent, 100) for store in stores)
    uuid = new_uuid()
    old.put(absent(uuid))
    assert old.get(uuid) is not None
    assert new.get(uuid) is None


def test_only_absences_are_shared(tmp_path):
    cache = SharedAbsentCache(tmp_path / "absent.sqlite3", 100)
    uuid = new_uuid()
    cache.put(Verdict(uuid, Presence.UNKNOWN, ()))
    cache.put(Verdict(uuid, Presence.PRESENT, ()))
    assert cache.get(uuid) is None
    cache.put(absent(uuid))
    assert cache.get(uuid).presence is Presence.ABSENT


def test_it_is_bounded(tmp_path):
    cache = SharedAbsentCache(tmp_path / "absent.sqlite3", 25, prune_every=10)
    uuids = [new_uuid() for _ in range(100)]
    for uuid in uuids:
        cache.put(absent(uuid))
    kept = [u for u in uuids if cache.get(u) is not None]
    assert len(kept) <= 25 + 10
    assert uuids[-1] in kept  # the newest are kept


def test_an_unreadable_table_is_a_miss_not_an_answer(tmp_path, requests_mock):
    path = tmp_path / "absent.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    cache = SharedAbsentCache(path, 100)
    uuid = new_uuid()
    cache.put(absent(uuid))  # logged, ignored
    assert cache.get(uuid) is None
    cloud = FakeCloud(requests_mock)
    present = cloud.add()
    checker = Checker([RegionChecker(cloud.nova())], shared=cache)
    assert checker.check(present).presence is Presence.PRESENT
