"""The upstream budget: what a hostile bulk or a flood may cost OpenStack (counted requests)."""

from __future__ import annotations

import threading
import uuid as uuidlib

import pytest
from falcon import testing

from instanceapi.check.budget import TokenBucket, UpstreamBudget
from instanceapi.check.checker import Checker, RegionChecker
from instanceapi.check.fairpool import FairPool
from instanceapi.check.store.absent import SharedAbsentCache
from instanceapi.config import RegionSpec, Settings
from instanceapi.http.app import create_app
from instanceapi.metrics import Metrics
from instanceapi.openstack.breaker import Breaker
from instanceapi.uuids import byte_swapped
from instanceapi.verdict import Presence, Sighting, Verdict
from tests.fakes import FakeCloud, not_found

DEFAULTS = Settings(regions=(RegionSpec("cloud"),))
KEYSTONE_401 = {
    "error": {
        "code": 401,
        "title": "Unauthorized",
        "message": "The request you have made requires authentication.",
    }
}


class FrozenClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def twin_is_v4(twin_v4: bool) -> str:
    """Return a random uuid4 whose byte-swapped twin is (or is not) a version-4 UUID too."""
    while True:
        candidate = str(uuidlib.uuid4())
        if (uuidlib.UUID(byte_swapped(candidate)).version == 4) is twin_v4:
            return candidate


def client_for(
    cloud: FakeCloud,
    *,
    clock: FrozenClock | None = None,
    rate: float = DEFAULTS.upstream_rate,
    burst: int = DEFAULTS.upstream_burst,
    breaker: Breaker | None = None,
) -> testing.TestClient:
    """Return a client of the app wired as build_checker wires it, with the default budget."""
    nova = cloud.nova()
    if breaker is not None:
        nova._breaker = breaker
    budget = UpstreamBudget(
        rate=rate,
        burst=burst,
        concurrency=DEFAULTS.max_live_lookups,
        **({"clock": clock} if clock else {}),
    )
    checker = Checker(
        [RegionChecker(nova)],
        bulk_concurrency=DEFAULTS.bulk_concurrency,
        budget=budget,
        bulk_max_live=DEFAULTS.bulk_max_live,
    )
    return testing.TestClient(create_app(DEFAULTS, checker=checker, metrics=Metrics()))


def gets_of(cloud: FakeCloud, uuids: list[str]) -> int:
    """Count GET /servers/{id} sent for these UUIDs or their twins."""
    wanted = {u for x in uuids for u in (x, byte_swapped(x))}
    return sum(
        1
        for r in cloud.mocker.request_history
        if r.method == "GET" and r.url.rsplit("/", 1)[-1] in wanted
    )


@pytest.fixture
def cloud(requests_mock):
    return FakeCloud(requests_mock)


@pytest.fixture
def refused(requests_mock):
    """A cloud whose Keystone refuses the service's password (rotated, or expired)."""
    cloud = FakeCloud(requests_mock)
    cloud.fail(r".*/auth/tokens$", status_code=401, json=KEYSTONE_401)
    return cloud


def test_a_hostile_bulk_costs_at_most_the_per_request_cap(cloud):
    client = client_for(cloud)
    client.simulate_get(f"/check/{twin_is_v4(True)}")  # visibility established
    hostile = [twin_is_v4(True) for _ in range(1000)]
    answer = client.simulate_post("/check", json={"uuids": hostile})
    codes = [r["code"] for r in answer.json["results"]]
    assert codes.count(404) == DEFAULTS.bulk_max_live
    assert codes.count(503) == 1000 - DEFAULTS.bulk_max_live
    # Both forms of each UUID looked up live: two GETs each, for the capped number only.
    assert gets_of(cloud, hostile) == 2 * DEFAULTS.bulk_max_live


def test_a_flood_gets_503_with_retry_after_once_the_rate_is_spent(cloud):
    clock = FrozenClock()
    client = client_for(cloud, clock=clock, rate=1.0, burst=10)
    flood = [twin_is_v4(False) for _ in range(40)]
    answers = [client.simulate_get(f"/check/{u}") for u in flood]
    assert gets_of(cloud, flood) == 10
    refused = [a for a in answers if a.status_code == 503]
    assert len(refused) == 30
    assert all(a.headers["Retry-After"] == "1" for a in refused)
    assert all(a.headers["Instance-Exists"] == "unknown" for a in refused)
    clock.now += 5.0  # five tokens later
    again = [client.simulate_get(f"/check/{u}").status_code for u in flood[-6:]]
    assert again == [404] * 5 + [503]


def test_bulk_items_and_single_checks_share_the_budget(cloud):
    clock = FrozenClock()
    client = client_for(cloud, clock=clock, rate=1.0, burst=8)
    bulk = [twin_is_v4(False) for _ in range(20)]
    results = client.simulate_post("/check", json={"uuids": bulk}).json["results"]
    assert [r["code"] for r in results].count(503) >= 12
    assert gets_of(cloud, bulk) <= 8
    assert client.simulate_get(f"/check/{twin_is_v4(False)}").status_code == 503


def test_refused_credentials_are_tried_once_for_a_hostile_bulk(refused):
    client = client_for(refused)
    hostile = [twin_is_v4(True) for _ in range(200)]
    answer = client.simulate_post("/check", json={"uuids": hostile})
    codes = {r["code"] for r in answer.json["results"]}
    assert codes <= {500, 503}
    assert 404 not in codes
    assert refused.calls("POST", "/auth/tokens") == 1
    assert gets_of(refused, hostile) == 0


def test_refused_credentials_are_tried_once_for_a_flood(refused):
    client = client_for(refused)
    answers = [client.simulate_get(f"/check/{twin_is_v4(True)}") for _ in range(50)]
    assert {a.status_code for a in answers} == {500}
    assert refused.calls("POST", "/auth/tokens") == 1
    assert "paused" in answers[-1].json["detail"]
    assert refused.auth_url not in answers[-1].text


def test_the_breaker_tries_again_after_a_growing_pause_and_closes_on_success(refused):
    clock = FrozenClock()
    client = client_for(refused, breaker=Breaker(base=30.0, cap=600.0, clock=clock))
    uuid = twin_is_v4(False)
    assert client.simulate_get(f"/check/{uuid}").status_code == 500
    clock.now += 29.0
    assert client.simulate_get(f"/check/{uuid}").status_code == 500
    assert refused.calls("POST", "/auth/tokens") == 1
    clock.now += 2.0  # the first pause (30 s) is over: one trial, refused again
    assert client.simulate_get(f"/check/{uuid}").status_code == 500
    assert refused.calls("POST", "/auth/tokens") == 2
    clock.now += 59.0  # the second pause is 60 s
    assert client.simulate_get(f"/check/{uuid}").status_code == 500
    assert refused.calls("POST", "/auth/tokens") == 2
    # The password is fixed in Keystone: the next trial succeeds and the breaker closes.
    refused.mocker.post(
        f"{refused.auth_url}/auth/tokens",
        json=refused._token,
        status_code=201,
        headers={"X-Subject-Token": "fixed"},
    )
    clock.now += 2.0
    assert client.simulate_get(f"/check/{uuid}").status_code == 404
    assert client.simulate_get(f"/check/{twin_is_v4(False)}").status_code == 404
    assert refused.calls("POST", "/auth/tokens") == 3


def test_a_failing_keystone_opens_the_breaker_too(cloud):
    cloud.fail(r".*/auth/tokens$", status_code=503, json={"error": {"code": 503}})
    client = client_for(cloud)
    answers = [client.simulate_get(f"/check/{twin_is_v4(True)}") for _ in range(20)]
    assert {a.status_code for a in answers} == {500}
    assert cloud.calls("POST", "/auth/tokens") == 1


def test_the_twin_is_not_asked_where_the_first_lookup_failed(cloud):
    client = client_for(cloud)
    client.simulate_get(f"/check/{twin_is_v4(True)}")  # visibility established
    uuid = twin_is_v4(True)
    cloud.fail(rf".*/servers/{uuid}$", status_code=500, json={"computeFault": {"code": 500}})
    assert client.simulate_get(f"/check/{uuid}").status_code == 500
    assert cloud.calls("GET", uuid) == 1
    assert cloud.calls("GET", byte_swapped(uuid)) == 0
    absent = twin_is_v4(True)
    assert client.simulate_get(f"/check/{absent}").status_code == 404
    assert cloud.calls("GET", byte_swapped(absent)) == 1  # needed for a 404


def test_a_small_bulk_is_served_in_turn_while_a_large_one_runs(cloud):
    checker = Checker([RegionChecker(cloud.nova())], bulk_concurrency=1, bulk_max_live=1000)
    client = testing.TestClient(create_app(DEFAULTS, checker=checker, metrics=Metrics()))
    client.simulate_get(f"/check/{twin_is_v4(False)}")  # visibility established
    large = [twin_is_v4(False) for _ in range(30)]
    small = [twin_is_v4(False) for _ in range(5)]
    gate, blocked = threading.Event(), threading.Semaphore(0)

    def held(request, context):
        blocked.release()
        gate.wait(5)
        context.status_code = 404
        return not_found(request.url.rsplit("/", 1)[-1])

    cloud.mocker.get(f"{cloud.compute_url}/servers/{large[0]}", json=held)
    threads = [
        threading.Thread(
            target=client.simulate_post, args=("/check",), kwargs={"json": {"uuids": u}}
        )
        for u in (large, small)
    ]
    threads[0].start()
    assert blocked.acquire(timeout=5)  # the pool's one thread is busy
    threads[1].start()
    for _ in range(500):  # until the small bulk is queued behind them (at most 5 s)
        if len(checker._pool._ring) == 2:
            break
        threading.Event().wait(0.01)
    gate.set()
    for thread in threads:
        thread.join(10)
    order = [r.url.rsplit("/", 1)[-1] for r in cloud.mocker.request_history if r.method == "GET"]
    last_small = max(order.index(u) for u in small)
    large_before = sum(1 for u in order[:last_small] if u in large)
    # In turn: the held one, then one large per small; first come first served: all 30.
    assert large_before <= 1 + len(small)


def test_the_pool_serves_batches_in_turn():
    pool = FairPool(1)
    started = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def run(item: str) -> str:
        if item == "a0":
            started.set()
            release.wait(5)
        order.append(item)
        return item

    big = threading.Thread(target=pool.map, args=(run, [f"a{i}" for i in range(6)]))
    big.start()
    assert started.wait(5)
    small = threading.Thread(target=pool.map, args=(run, ["b0", "b1"]))
    small.start()
    for _ in range(500):  # until the small batch is queued (at most 5 s)
        if len(pool._ring) == 2:
            break
        threading.Event().wait(0.01)
    release.set()
    small.join(5)
    big.join(5)
    assert order == ["a0", "a1", "b0", "a2", "b1", "a3", "a4", "a5"]


def test_the_bucket_refills_at_its_rate_and_never_past_its_size():
    clock = FrozenClock()
    bucket = TokenBucket(2.0, 3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now += 1.0
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    clock.now += 100.0
    assert sum(bucket.take() for _ in range(10)) == 3
    clock.now -= 50.0  # a clock that steps back takes nothing away, and gives nothing
    assert bucket.take() is False


def test_absences_another_worker_confirmed_do_not_count_against_the_cap(cloud, tmp_path):
    shared = SharedAbsentCache(tmp_path / "absent.sqlite3", 1000)
    known = [twin_is_v4(False) for _ in range(DEFAULTS.bulk_max_live + 10)]
    for uuid in known:
        sighting = Sighting("c/R", "c", "R", uuid, Presence.ABSENT, "c/R: 404", rule="by-id")
        shared.put(Verdict(uuid, Presence.ABSENT, (sighting,)))
    checker = Checker([RegionChecker(cloud.nova())], shared=shared)
    fresh = [twin_is_v4(False) for _ in range(5)]
    verdicts = checker.check_many(known + fresh)
    assert [v.presence for v in verdicts] == [Presence.ABSENT] * len(known + fresh)
    assert gets_of(cloud, known) == 0
