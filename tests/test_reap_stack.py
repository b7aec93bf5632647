"""reap against the real stack on loopback: simulated Satellite, real service under Gunicorn,
simulated cloud. 50 OpenStack guests, of which 10 were deleted from the cloud."""

from __future__ import annotations

import io
import json
import socket
from datetime import UTC, datetime, timedelta

import pytest

from instanceapi.reap.cli import main
from instanceapi.testing import SimulatedCloud
from instanceapi.testing.harness import ServiceProcess, service_env
from instanceapi.testing.satellite import SimulatedSatellite

T0 = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)
CAPS = ("--max-delete", "10", "--max-delete-percent", "25")


def start_service(cloud, tmp_path_factory):
    # reap demands fresh evidence (Cache-Control: no-cache) for every check, so
    # runs seconds apart each look every absent host up again: a budget for that.
    env = service_env(cloud, tmp_path_factory.mktemp("svc"), INSTANCEAPI_UPSTREAM_BURST="1000")
    return ServiceProcess(env, ready_path="/readyz")


@pytest.fixture(scope="module")
def cloud():
    with SimulatedCloud() as cloud:
        ids = [cloud.add_server(project=("alpha", "beta")[n % 2]).id for n in range(50)]
        for server_id in ids[:10]:
            cloud.delete_server(server_id)
        cloud.ids = ids
        yield cloud


@pytest.fixture(scope="module")
def service(cloud, tmp_path_factory):
    with start_service(cloud, tmp_path_factory) as service:
        yield service


@pytest.fixture(autouse=True)
def _healthy(cloud):
    cloud.clear_faults()
    yield
    cloud.clear_faults()


@pytest.fixture
def sat(cloud):
    """The Satellite of the 50 guests (uuids upper-case, as dmidecode may show them) + others."""
    with SimulatedSatellite() as sat:
        for n, server_id in enumerate(cloud.ids):
            sat.add_guest(f"vm{n:02d}.cloud.example.com", server_id.upper())
        sat.add_host("metal.example.com", product="PowerEdge R650")
        sat.add_host("vmware.example.com", uuid=cloud.ids[0], product="VMware Virtual Platform")
        sat.add_host("nouuid.cloud.example.com", product="OpenStack Compute")
        yield sat


GONE = {f"vm{n:02d}.cloud.example.com" for n in range(10)}
NEVER = {"metal.example.com", "vmware.example.com", "nouuid.cloud.example.com"}


def reap(sat, url, tmp_path, *extra, now=T0):
    out = io.StringIO()
    argv = [
        "--satellite-url", sat.url, "--satellite-user", sat.user, "--service-url", url,
        "--state-file", str(tmp_path / "state.json"), "--audit-log", str(tmp_path / "audit.jsonl"),
        "--report", str(tmp_path / "report.csv"), "--report-format", "json",
        "--now", now.isoformat(), "--satellite-retries", "0", "--allow-plain-http", *CAPS, *extra,
    ]  # fmt: skip
    env = {"INSTANCEAPI_REAP_SATELLITE_PASSWORD": sat.password}
    status = main(argv, env=env, stdout=out, stderr=out)
    report = {r["host"]: r for r in json.loads((tmp_path / "report.csv").read_text())}
    return status, out.getvalue(), report


def test_dry_run_lists_exactly_the_ten_gone(sat, service, tmp_path):
    status, out, report = reap(sat, service.url, tmp_path)
    assert status == 0, out
    assert {h for h, r in report.items() if r["answer"] == "absent"} == GONE
    assert {h for h, r in report.items() if r["action"] == "skip"} == NEVER
    assert sat.deleted == []


def test_two_apply_runs_past_the_interval_delete_exactly_the_ten(sat, service, tmp_path):
    status, out, report = reap(sat, service.url, tmp_path, "--apply")
    assert status == 0 and sat.deleted == [], out
    assert {h for h, r in report.items() if r["action"] == "pending"} == GONE
    status, out, report = reap(sat, service.url, tmp_path, "--apply", now=T0 + timedelta(hours=1))
    assert status == 0, out
    assert set(sat.deleted) == GONE and len(sat.deleted) == 10
    assert sat.names() >= NEVER
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 53, "one line per host and run"
    deleted = [json.loads(ln) for ln in lines if '"outcome": "deleted"' in ln]
    assert {d["host"] for d in deleted} == GONE
    assert all(d["answer"] == "absent" and d["action"] == "delete" for d in deleted)


def test_a_host_that_comes_back_is_unmarked(sat, service, cloud, tmp_path):
    reap(sat, service.url, tmp_path, "--apply")
    # vm00 is re-registered from a live instance: its virt::uuid is now one that exists.
    sat.host("vm00.cloud.example.com").facts["virt::uuid"] = cloud.ids[40]
    status, _, report = reap(sat, service.url, tmp_path, "--apply", now=T0 + timedelta(hours=1))
    assert status == 0 and report["vm00.cloud.example.com"]["reason"] == "present"
    assert "vm00.cloud.example.com" not in sat.deleted and len(sat.deleted) == 9
    sat.host("vm00.cloud.example.com").facts["virt::uuid"] = cloud.ids[0]
    _, _, report = reap(sat, service.url, tmp_path, "--apply", now=T0 + timedelta(hours=2))
    assert report["vm00.cloud.example.com"]["outcome"] == "marked 1/2"
    assert "vm00.cloud.example.com" not in sat.deleted


def test_linked_and_protected_hosts_are_kept(sat, service, tmp_path):
    sat.host("vm01.cloud.example.com").compute_resource_id = 1
    sat.host("vm02.cloud.example.com").parameters["instanceapi_protect"] = "true"
    status, out, report = reap(sat, service.url, tmp_path, "--apply", "--confirm-runs", "1")
    assert status == 0, out
    assert set(sat.deleted) == GONE - {"vm01.cloud.example.com", "vm02.cloud.example.com"}
    assert report["vm01.cloud.example.com"]["reason"] == "compute-resource"
    assert report["vm02.cloud.example.com"]["reason"] == "protected"


def test_a_service_on_an_empty_cloud_trips_the_cap(sat, tmp_path, tmp_path_factory):
    with SimulatedCloud() as empty, start_service(empty, tmp_path_factory) as wrong:
        for hours in (0, 1, 2):
            now = T0 + timedelta(hours=hours)
            status, out, report = reap(sat, wrong.url, tmp_path, "--apply", now=now)
            assert status == 5, out
    assert sum(r["answer"] == "absent" for r in report.values()) == 50
    assert sat.deleted == [] and json.loads((tmp_path / "state.json").read_text())["hosts"] == {}


def test_a_down_or_unreachable_service_deletes_nothing(service, cloud, tmp_path):
    # Instances the service has never been asked about, so no earlier answer is cached.
    fresh = [cloud.add_server(project="gamma").id for _ in range(5)]
    for server_id in fresh[:3]:
        cloud.delete_server(server_id)
    cloud.fault("nova", status=500)
    with SimulatedSatellite() as sat:
        for n, server_id in enumerate(fresh):
            sat.add_guest(f"new{n}.cloud.example.com", server_id)
        args = ("--apply", "--confirm-runs", "1", "--max-delete-percent", "100")
        status, out, report = reap(sat, service.url, tmp_path, *args)
        assert status in (4, 6), out  # not ready, or ready with doubtful answers
        assert not any(r["answer"] == "absent" for r in report.values())
        cloud.clear_faults()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            refused = f"http://127.0.0.1:{sock.getsockname()[1]}"
        status, out, _ = reap(sat, refused, tmp_path, *args)
        assert status == 4 and "Connection refused" in out
        assert sat.deleted == []


def test_a_wrong_service_url_deletes_nothing(sat, service, tmp_path):
    status, out, report = reap(
        sat, service.url + "/api", tmp_path, "--apply", "--confirm-runs", "1"
    )
    assert status == 4 and report == {} and sat.deleted == [], out


def test_pagination_and_a_failed_delete(sat, service, tmp_path):
    sat.fail_delete("vm05.cloud.example.com")
    args = ("--apply", "--confirm-runs", "1", "--per-page", "7")
    status, out, report = reap(sat, service.url, tmp_path, *args)
    assert status == 1, out
    assert set(sat.deleted) == GONE - {"vm05.cloud.example.com"}
    assert report["vm05.cloud.example.com"]["outcome"].startswith("delete-failed: DELETE")
    assert sat.requests["GET /api/v2/hosts"] == 8  # 53 hosts, 7 a page
    assert len((tmp_path / "audit.jsonl").read_text().splitlines()) == 53
