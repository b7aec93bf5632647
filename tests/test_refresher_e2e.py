"""One refresher per service, end to end: real Gunicorn, the simulated cloud over loopback.

Every count is of the simulated cloud's own request log, and periodic polls
are pushed out of the test's window (INSTANCEAPI_REFRESH_INTERVAL=3600), so
the requests counted are those the test causes.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time

import pytest
import requests

from instanceapi.testing import SimulatedCloud, seed_demo
from instanceapi.testing.harness import ServiceProcess, service_env
from tests.fakes import new_uuid

QUIET = {"INSTANCEAPI_REFRESH_INTERVAL": "3600", "INSTANCEAPI_INDEX_MAX_AGE": "7200"}
DETAIL = {"INSTANCEAPI_ALLOW_CIDRS": "127.0.0.1/32"}  # /readyz then says why


def nova_requests(cloud: SimulatedCloud, since: int = 0) -> list[str]:
    """Return the paths of Nova requests logged after the first `since` of them."""
    return [r.path for r in cloud.requests if r.service == "nova"][since:]


def full_listing_pages(paths: list[str]) -> int:
    """Count pages of complete listings (paged, no changes-since window)."""
    return sum(
        1 for p in paths if "/servers/detail" in p and "limit=" in p and "changes-since" not in p
    )


def wait_for(predicate, what: str, timeout: float = 60.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"never: {what}")


def status_of(url: str) -> int:
    return requests.get(url, timeout=30).status_code


def worker_pids(service: ServiceProcess) -> list[int]:
    import re

    return [int(p) for p in re.findall(r"Booting worker with pid: (\d+)", service.log_text)]


@pytest.fixture(scope="module")
def big_cloud():
    with SimulatedCloud() as cloud:
        data = seed_demo(cloud)
        cloud.populate(60_000)
        yield cloud, data


def test_four_workers_list_the_cloud_once_and_a_killed_worker_lists_nothing(big_cloud, tmp_path):
    cloud, data = big_cloud
    before = len(nova_requests(cloud))
    env = service_env(cloud, tmp_path, **QUIET)
    with ServiceProcess(env, workers=4, ready_path="/readyz", startup_timeout=180) as service:
        started = nova_requests(cloud, before)
        # One complete listing of ~60,000 servers in pages of 1,000, not one per worker.
        assert 60 <= full_listing_pages(started) <= 62, started[:5]
        existing = data["existing"][0]
        assert status_of(f"{service.url}/check/{existing}") == 200

        seen = len(nova_requests(cloud))
        victim = worker_pids(service)[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(worker_pids(service)) >= 5, "a replacement worker booted")
        for _ in range(20):  # spread over the workers, the new one among them
            response = requests.get(f"{service.url}/check/{existing}", timeout=30)
            assert response.status_code == 200
            assert response.json()["source"] == "index"
        assert nova_requests(cloud, seen) == []  # the restart cost Nova nothing


@pytest.fixture(scope="module")
def cloud():
    with SimulatedCloud() as cloud:
        yield cloud, seed_demo(cloud)


def test_a_killed_refresher_is_restarted_and_checks_go_live_meanwhile(cloud, tmp_path):
    cloud, data = cloud
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = service_env(cloud, tmp_path, INSTANCEAPI_RUNTIME_DIR=str(runtime), **DETAIL)
    # One worker: the one that says "down" is the one that answers the checks.
    with ServiceProcess(env, workers=1, ready_path="/readyz") as service:
        wait_for(lambda: status_of(f"{service.url}/readyz") == 200, "ready")
        first = service.refresher_pids[-1]
        assert list(runtime.glob(f"metrics/gauge_live*_{first}.db"))
        # A refresher that keeps dying is restarted after 1, 2, 4, then 8 s: the
        # fourth death leaves a window long enough to look at the service meanwhile.
        for deaths in range(1, 5):
            pid = service.refresher_pids[-1]
            os.kill(pid, signal.SIGKILL)
            if deaths < 4:
                wait_for(lambda pid=pid: service.refresher_pids[-1] != pid, "restarted")

        # (a tuple: a Response is falsy when its status is an error)
        (down,) = wait_for(
            lambda: (
                (r := requests.get(f"{service.url}/readyz", timeout=30)).status_code == 503 and (r,)
            ),
            "readyz says the refresher is down",
        )
        assert "refresher is not running" in down.text
        # Meanwhile checks are answered by live lookups, as with a stale index.
        present = requests.get(f"{service.url}/check/{data['existing'][0]}", timeout=30)
        assert present.status_code == 200
        assert present.json()["source"] == "live"
        gone = requests.get(f"{service.url}/check/{data['deleted'][0]}", timeout=30)
        assert gone.status_code == 404  # by-id: Nova's 404 under the rule the refresher proved

        wait_for(lambda: status_of(f"{service.url}/readyz") == 200, "ready again", timeout=90)
        assert len(set(service.refresher_pids)) == 5
        assert service.log_text.count("SIGKILL") >= 4
        # The dead refreshers' live gauges are gone (else an old index_success stays the minimum).
        dead = service.refresher_pids[:-1]
        assert not [p for pid in dead for p in runtime.glob(f"metrics/gauge_live*_{pid}.db")]


def test_a_reload_gives_the_refresher_the_new_configuration(tmp_path):
    with SimulatedCloud(regions=("RegionOne", "RegionTwo")) as cloud:
        seed_demo(cloud)
        clouds_yaml = tmp_path / "clouds.yaml"
        config = tmp_path / "instanceapi.env"
        cloud.write_clouds_yaml(clouds_yaml, regions=["RegionOne"])
        config.write_text("INSTANCEAPI_EXCLUDE_REGIONS=demo/RegionTwo\n")
        env = {
            "OS_CLIENT_CONFIG_FILE": str(clouds_yaml),
            "INSTANCEAPI_CLOUDS": "demo",
            "INSTANCEAPI_CONFIG_FILE": str(config),
            **DETAIL,
        }
        with ServiceProcess(env, workers=2, ready_path="/readyz") as service:
            assert "index of 1 region(s)" in service.log_text
            cloud.write_clouds_yaml(clouds_yaml, regions=["RegionOne", "RegionTwo"])
            config.write_text("")
            service.reload()

            wait_for(lambda: "index of 2 region(s)" in service.log_text, "the new refresher")
            targets = wait_for(_two_ready_targets(service.url), "both regions ready", timeout=90)
            assert {t["target"] for t in targets} == {"demo/RegionOne", "demo/RegionTwo"}


def _two_ready_targets(url: str):
    def check():
        body = requests.get(f"{url}/readyz", timeout=30).json()
        targets = body.get("targets", [])
        return len(targets) == 2 and body["ready"] and targets

    return check


def test_concurrent_listing_rule_questions_share_one_poll(cloud, tmp_path):
    cloud, _ = cloud
    env = service_env(cloud, tmp_path, user="reader-all", **QUIET)
    with ServiceProcess(env, workers=2, ready_path="/readyz") as service:
        unknown = [new_uuid() for _ in range(8)]
        seen = len(nova_requests(cloud))
        with concurrent.futures.ThreadPoolExecutor(len(unknown)) as pool:
            answers = list(
                pool.map(lambda u: requests.get(f"{service.url}/check/{u}", timeout=60), unknown)
            )
        # Listed nowhere: an omission is never evidence (only a DELETED record is).
        assert [a.status_code for a in answers] == [500] * len(unknown)
        polls = [p for p in nova_requests(cloud, seen) if "changes-since" in p]
        assert 1 <= len(polls) <= 2, polls


def test_workers_never_list_and_the_store_holds_one_snapshot_per_region(cloud, tmp_path):
    cloud, _ = cloud
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = service_env(cloud, tmp_path, INSTANCEAPI_RUNTIME_DIR=str(runtime), **QUIET)
    seen = len(nova_requests(cloud))
    with ServiceProcess(env, workers=2, ready_path="/readyz") as service:
        stores = list(runtime.glob("store-*"))
        assert len(stores) == 1
        assert len(list(stores[0].glob("*.snap"))) == 1
        assert (stores[0] / "absent.sqlite3").exists()  # confirmed absences: the same store
        assert full_listing_pages(nova_requests(cloud, seen)) == 1
        assert service.refresher_pids


def test_a_reload_or_a_restart_continues_from_the_published_index(cloud, tmp_path):
    cloud, data = cloud
    env = service_env(cloud, tmp_path, **QUIET)
    with ServiceProcess(env, workers=2, ready_path="/readyz") as service:
        seen = len(nova_requests(cloud))
        first = service.refresher_pids[-1]
        service.reload()
        wait_for(lambda: service.refresher_pids[-1] != first, "a new refresher")
        wait_for(lambda: "continuing from the published index" in service.log_text, "adoption")
        killed = service.refresher_pids[-1]
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda: service.refresher_pids[-1] != killed, "restarted")
        wait_for(lambda: service.log_text.count("continuing from the published index") >= 2, "2")
        wait_for(lambda: status_of(f"{service.url}/readyz") == 200, "ready")
        assert status_of(f"{service.url}/check/{data['existing'][0]}") == 200
        assert full_listing_pages(nova_requests(cloud, seen)) == 0
