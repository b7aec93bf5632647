"""End to end: real Gunicorn, real keystoneauth1 + novaclient, the simulated cloud on loopback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests

from instanceapi.check.checker import forms
from instanceapi.testing import SimulatedCloud, harness, seed_demo
from instanceapi.testing.harness import ServiceError, ServiceProcess
from tests.fakes import new_uuid


@pytest.fixture(scope="module")
def cloud():
    with SimulatedCloud(regions=("RegionOne", "RegionTwo")) as cloud:
        yield cloud


@pytest.fixture(scope="module")
def demo(cloud):
    return seed_demo(cloud)


#: The cloud's catalog has RegionTwo too: checking RegionOne alone needs it excluded.
ONLY_REGION_ONE = {"INSTANCEAPI_EXCLUDE_REGIONS": "demo/RegionTwo"}


def service_env(cloud, tmp_path, **kwargs):
    # NOTE: no Keystone pause: these tests switch faults on and off between two
    # requests; the pause has its own tests (test_budget, test_security_e2e).
    kwargs.setdefault("INSTANCEAPI_KEYSTONE_PAUSE", "0")
    return harness.service_env(cloud, tmp_path, retries="1", **kwargs)


@pytest.fixture(scope="module")
def service(cloud, demo, tmp_path_factory):
    env = service_env(cloud, tmp_path_factory.mktemp("svc"))
    with ServiceProcess(env, workers=2, ready_path="/readyz") as service:
        yield service


@pytest.fixture(autouse=True)
def _healthy(cloud):
    cloud.clear_faults()
    yield
    cloud.clear_faults()


def get(service, path, **kwargs):
    return requests.get(service.url + path, timeout=30, **kwargs)


def test_existing_deleted_and_invalid(service, demo):
    existing = get(service, f"/check/{demo['existing'][0]}")
    assert existing.status_code == 200
    assert existing.headers["Instance-Exists"] == "true"
    assert existing.json()["exists"] is True

    deleted = get(service, f"/check/{demo['deleted'][0]}")
    assert deleted.status_code == 404
    assert deleted.headers["Instance-Exists"] == "false"
    assert deleted.json()["exists"] is False

    invalid = get(service, "/check/not-a-uuid")
    assert invalid.status_code == 400
    assert "Instance-Exists" not in invalid.headers


def test_every_demo_instance_exists_including_soft_deleted(service, demo):
    for uuid in demo["existing"]:
        assert get(service, f"/check/{uuid.upper()}").status_code == 200, uuid
    soft = get(service, f"/check/{demo['soft_deleted'][0]}")
    assert soft.json()["status"] == "SOFT_DELETED"


def test_an_instance_in_the_second_region(service, cloud):
    server = cloud.add_server(project="beta", region="RegionTwo")
    answer = get(service, f"/check/{server.id}")
    assert answer.status_code == 200
    assert answer.json()["region"] == "RegionTwo"


def test_route_shapes(service, demo):
    uuid = demo["existing"][0]
    assert get(service, f"/check/{uuid}/").status_code == 200
    assert get(service, f"/check/{uuid.replace('-', '')}").status_code == 200
    for path in ("/check", "/check/", f"/check/{uuid}/x"):
        assert get(service, path).status_code == 400, path
    head = requests.head(f"{service.url}/check/{demo['deleted'][0]}", timeout=30)
    assert (head.status_code, head.content) == (404, b"")
    assert head.headers["Instance-Exists"] == "false"
    text = get(service, f"/check/{uuid}", headers={"Accept": "text/plain"})
    assert text.text.startswith(f"Instance {uuid} exists in demo/")


def test_keystone_down_is_500_not_404(service, cloud):
    cloud.expire_tokens()  # force a fresh token request...
    cloud.fault("keystone", down=True)  # ...that cannot be made
    answer = get(service, f"/check/{new_uuid()}")
    assert answer.status_code == 500
    assert answer.json()["exists"] is None
    assert "unreachable" in answer.json()["detail"]


@pytest.mark.parametrize(
    "fault", [{"status": 500}, {"status": 503}, {"garbage": True}, {"delay": 3.0}, {"down": True}]
)
def test_nova_faults_are_500_not_404(service, cloud, demo, fault):
    cloud.fault("nova", region="RegionTwo", **fault)
    answer = get(service, f"/check/{new_uuid()}")  # never seen: no cached verdict
    assert answer.status_code == 500
    assert answer.json()["region"] == "RegionTwo"
    # RegionOne still finds what it has: present anywhere wins.
    assert get(service, f"/check/{demo['existing'][0]}").status_code == 200


def test_unreachable_cell_is_500_with_null(service, cloud):
    server = cloud.add_server(project="gamma", cell="cell2")
    cloud.set_cell_down("cell2")
    try:
        answer = get(service, f"/check/{server.id}")
    finally:
        cloud.set_cell_down("cell2", down=False)
    assert answer.status_code == 500
    assert answer.json()["exists"] is None
    assert answer.json()["status"] == "UNKNOWN"


def test_revoked_tokens_are_renewed(service, cloud, demo):
    cloud.revoke_tokens()
    assert get(service, f"/check/{demo['existing'][0]}").status_code == 200


def test_upstream_cost_is_one_token_per_worker(service, cloud, demo):
    wait_for_index(service)
    cloud.revoke_tokens()
    cloud.reset_counts()
    for _ in range(50):
        assert get(service, f"/check/{demo['existing'][0]}").status_code == 200
    assert cloud.counts["keystone.token"] <= 2  # one per worker at most
    cloud.reset_counts()
    for _ in range(50):
        assert get(service, f"/check/{demo['existing'][1]}").status_code == 200
    assert cloud.counts["keystone.token"] == 0  # both workers reuse their tokens
    assert nova_asked_about(cloud, demo["existing"][1]) == 0  # each worker's index answered


def test_absent_uuid_is_asked_once_per_service(service, cloud):
    wait_for_index(service)
    absent = new_uuid()
    cloud.reset_counts()
    for _ in range(20):
        answer = get(service, f"/check/{absent}")
        assert answer.status_code == 404
    # Both regions (twice each if the byte-swapped twin is a v4 UUID) once, whichever
    # worker answers: the workers share confirmed absences. Only Nova's answers about
    # this UUID count: not the visibility probes' GETs of other servers, nor the 401s
    # a token revoked by an earlier test earns before keystoneauth re-authenticates.
    assert 2 <= nova_asked_about(cloud, absent, status=404) <= 2 * 2
    assert answer.json()["source"] == "absent-cache"


def nova_asked_about(cloud, uuid, status=None):
    """Count Nova GETs of `uuid` or of its byte-swapped twin (what a check of it may ask),
    only those Nova answered with `status` if given."""
    paths = {f"/v2.1/servers/{form}" for _, form in forms(uuid)}
    return sum(
        1
        for r in cloud.requests
        if r.service == "nova" and r.path in paths and status in (None, r.status)
    )


def wait_for_index(service, timeout=20.0):
    """Wait until a check reports every target's index as refreshed."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ages = get(service, f"/check/{new_uuid()}").json()["index_age_seconds"]
        if ages and all(age is not None for age in ages.values()):
            return
        time.sleep(0.2)
    raise AssertionError("the index never refreshed")


def test_member_credentials_never_give_404(cloud, demo, tmp_path):
    with ServiceProcess(
        service_env(cloud, tmp_path, user="member", clouds="demo/RegionOne", **ONLY_REGION_ONE),
        ready_path="/healthz",
    ) as service:
        assert get(service, "/readyz").status_code == 503
        answer = get(service, f"/check/{demo['deleted'][0]}")
        assert answer.status_code == 500
        assert "lack all-project visibility" in answer.json()["detail"]


def test_reader_with_listing_override_uses_the_listing(cloud, demo, tmp_path):
    env = service_env(
        cloud,
        tmp_path,
        user="reader-all",
        clouds="demo/RegionOne",
        INSTANCEAPI_ALLOW_CIDRS="127.0.0.1",  # readiness detail is for allowlisted clients
        **ONLY_REGION_ONE,
    )
    with ServiceProcess(env, ready_path="/readyz") as service:
        assert "regions excluded (INSTANCEAPI_EXCLUDE_REGIONS): demo/RegionTwo" in service.log_text
        assert get(service, "/readyz").json()["excluded_regions"] == ["demo/RegionTwo"]
        other = cloud.add_server(project="gamma")
        present = get(service, f"/check/{other.id}")
        assert present.status_code == 200
        assert present.json()["rule"] == "listing"
        absent = get(service, f"/check/{demo['deleted'][0]}")
        assert absent.status_code == 404
        assert absent.json()["targets"][0]["rule"] == "listing"
        cloud.fault("nova", fail_page=1)
        assert get(service, f"/check/{new_uuid()}").status_code == 500


def test_invalid_setting_stops_startup_naming_the_key(cloud, tmp_path):
    env = service_env(cloud, tmp_path, INSTANCEAPI_TIMEOUT="soon")
    with pytest.raises(ServiceError) as caught, ServiceProcess(env):
        pass
    assert "INSTANCEAPI_TIMEOUT: expected a number" in str(caught.value)


def test_unknown_cloud_stops_startup(cloud, tmp_path):
    with (
        pytest.raises(ServiceError) as caught,
        ServiceProcess(service_env(cloud, tmp_path, clouds="nope")),
    ):
        pass
    assert "INSTANCEAPI_CLOUDS: cloud 'nope' is not configured" in str(caught.value)


def test_gunicorn_check_config(cloud, tmp_path):
    env = {**service_env(cloud, tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--check-config", "-c", "gunicorn.conf.py"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_cli_check_exit_statuses(cloud, demo, tmp_path, monkeypatch, capsys):
    from instanceapi.cli import main

    env = service_env(cloud, tmp_path, clouds="demo/RegionOne", **ONLY_REGION_ONE)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["check", demo["existing"][0]]) == 0
    assert main(["check", demo["deleted"][0]]) == 1
    assert main(["check", "nonsense"]) == 3
    cloud.fault("nova", region="RegionOne", status=500)
    assert main(["check", "--json", demo["deleted"][0]]) == 2
    assert '"exists": null' in capsys.readouterr().out


def test_instanceapi_serve_runs_gunicorn_and_validates_first(tmp_path):
    """`instanceapi serve` execs Gunicorn with the bundled config: a bad setting stops it."""
    script = Path(sys.executable).with_name("instanceapi")
    env = {"PATH": "/usr/bin:/bin", "INSTANCEAPI_CLOUDS": "demo", "INSTANCEAPI_WORKERS": "many"}
    done = subprocess.run(
        [str(script), "serve"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "instanceapi: configuration error: INSTANCEAPI_WORKERS: expected a whole number" in (
        done.stderr
    )
