"""reap end to end over loopback HTTP: the simulated Satellite and a contract-faithful service.

The service here is a small Falcon app that follows the instanceapi contract and can
be switched into each failure mode (errors, bare 404s, a wrong cloud, no bulk
endpoint). tests/test_reap_stack.py runs the same flow against the real service.
"""

from __future__ import annotations

import io
import json
import socket
import time
from datetime import timedelta

import pytest

from instanceapi.reap.cli import main
from instanceapi.testing.satellite import SimulatedSatellite
from tests.fake_service import T0, UUID, FakeService, populate, serve


@pytest.fixture(scope="module")
def fake_service():
    fake = FakeService()
    with serve(fake.app()) as url:
        fake.url = url
        yield fake


@pytest.fixture
def service(fake_service):
    fake_service.existing.clear()
    fake_service.mode, fake_service.bulk, fake_service.ready_budget = "ok", True, 10**9
    fake_service.token, fake_service.detail = None, ""
    fake_service.requests.clear()
    return fake_service


@pytest.fixture
def sat():
    with SimulatedSatellite() as sim:
        yield sim


def reap(sat, service_url, tmp_path, *extra, now=T0, caps=("25", "25")):
    out, err = io.StringIO(), io.StringIO()
    argv = [
        "--satellite-url", sat.url, "--satellite-user", sat.user, "--service-url", service_url,
        "--state-file", str(tmp_path / "state.json"), "--audit-log", str(tmp_path / "audit.jsonl"),
        "--report", str(tmp_path / "report.json"), "--now", now.isoformat(),
        "--max-delete", caps[0], "--max-delete-percent", caps[1], "--allow-plain-http", *extra,
    ]  # fmt: skip
    env = {"INSTANCEAPI_REAP_SATELLITE_PASSWORD": sat.password}
    status = main(argv, env=env, stdout=out, stderr=err)
    report = json.loads((tmp_path / "report.json").read_text())
    return status, out.getvalue() + err.getvalue(), report


def absent_names(report) -> set[str]:
    return {r["host"] for r in report if r["answer"] == "absent"}


def by_host(report) -> dict[str, dict]:
    return {r["host"]: r for r in report}


def audit_lines(tmp_path) -> list[dict]:
    path = tmp_path / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_dry_run_lists_exactly_the_absent_hosts_and_changes_nothing(sat, service, tmp_path):
    gone = populate(sat, service)
    status, out, report = reap(sat, service.url, tmp_path)
    assert status == 0, out
    assert absent_names(report) == gone
    assert {r["outcome"] for r in report if r["host"] in gone} == {"would mark 1/2"}
    assert sat.deleted == [] and not (tmp_path / "state.json").exists()
    skipped = {r["host"]: r["reason"] for r in report if r["action"] == "skip"}
    assert skipped == {
        "metal.example.com": "not-openstack",
        "vmware.example.com": "not-openstack",
        "nouuid.cloud.example.com": "no-uuid",
        "nofacts.example.com": "not-openstack",
    }
    assert "dry-run" in out and "absent, pending      10" in out
    assert service.requests == {"POST": 1}, "50 candidates fit in one bulk request"


def test_apply_deletes_only_after_confirmation_runs_spaced_by_the_interval(sat, service, tmp_path):
    gone = populate(sat, service)
    first, out, _ = reap(sat, service.url, tmp_path, "--apply")
    assert first == 0 and sat.deleted == [], out
    soon, out, report = reap(sat, service.url, tmp_path, "--apply", now=T0 + timedelta(minutes=30))
    assert soon == 0 and sat.deleted == [], "a second run within the interval must not count"
    assert {r["outcome"] for r in report if r["host"] in gone} == {"marked 1/2"}
    dry, out, report = reap(sat, service.url, tmp_path, now=T0 + timedelta(hours=2))
    assert dry == 0 and sat.deleted == []
    assert {r["host"] for r in report if r["outcome"] == "would delete"} == gone
    last, out, report = reap(sat, service.url, tmp_path, "--apply", now=T0 + timedelta(hours=2))
    assert last == 0, out
    assert set(sat.deleted) == gone and len(sat.deleted) == 10
    assert "deleted              10" in out
    assert json.loads((tmp_path / "state.json").read_text())["hosts"] == {}
    # Audit: one line per host per run, every deletion among them.
    lines = audit_lines(tmp_path)
    assert len(lines) == 4 * 54
    assert {ln["host"] for ln in lines if ln["outcome"] == "deleted"} == gone


def test_a_host_that_reappears_is_unmarked(sat, service, tmp_path):
    populate(sat, service, guests=20, gone=1)
    reap(sat, service.url, tmp_path, "--apply")
    assert json.loads((tmp_path / "state.json").read_text())["hosts"].keys() == {"1"}
    service.existing.add(UUID.format(0))
    status, _, report = reap(sat, service.url, tmp_path, "--apply", now=T0 + timedelta(hours=2))
    assert status == 0 and by_host(report)["vm000.cloud.example.com"]["reason"] == "present"
    assert json.loads((tmp_path / "state.json").read_text())["hosts"] == {}
    service.existing.discard(UUID.format(0))
    status, _, report = reap(sat, service.url, tmp_path, "--apply", now=T0 + timedelta(hours=4))
    assert by_host(report)["vm000.cloud.example.com"]["outcome"] == "marked 1/2"
    assert sat.deleted == []


def test_guarded_hosts_are_kept_and_reported(sat, service, tmp_path):
    old = T0 - timedelta(days=30)
    sat.add_guest("linked.example.com", UUID.format(1), compute_resource_id=7, last_checkin=old)
    sat.add_guest("own.example.com", UUID.format(2), parameters={"instanceapi_protect": "true"})
    inherited = {"instanceapi_protect": "yes"}
    sat.add_guest("group.example.com", UUID.format(3), inherited_parameters=inherited)
    sat.add_guest("fresh.example.com", UUID.format(4), last_checkin=T0 - timedelta(hours=1))
    sat.add_guest("stale.example.com", UUID.format(5), last_checkin=old)
    sat.add_guest("excluded.example.com", UUID.format(6), last_checkin=old)
    for n in range(10, 60):
        sat.add_guest(f"vm{n}.example.com", UUID.format(n), last_checkin=old)
        service.existing.add(UUID.format(n))
    args = ("--apply", "--min-last-checkin-age", "7d", "--exclude", "EXCLUDED.*")
    for hours in (0, 2):
        status, out, report = reap(
            sat, service.url, tmp_path, *args, now=T0 + timedelta(hours=hours)
        )
    assert status == 0, out
    assert sat.deleted == ["stale.example.com"]
    reasons = {r["host"]: r["reason"] for r in report if not r["host"].startswith("vm")}
    assert reasons == {
        "linked.example.com": "compute-resource",
        "own.example.com": "protected",
        "group.example.com": "protected",
        "fresh.example.com": "recent-checkin",
        "stale.example.com": "confirmed",
        "excluded.example.com": "excluded-name",
    }
    assert "Absent but kept:" in out and "linked.example.com" in out


@pytest.mark.parametrize("caps", [("10", "5"), ("100", "5"), ("5", "100")])
def test_a_wrong_cloud_trips_the_cap_and_nothing_is_deleted(sat, service, tmp_path, caps):
    populate(sat, service)
    service.mode = "all-absent"
    for hours in (0, 2, 4):
        status, out, report = reap(
            sat, service.url, tmp_path, "--apply", now=T0 + timedelta(hours=hours), caps=caps
        )
        assert status == 5, out
    assert "cap exceeded, nothing deleted" in out
    assert sat.deleted == [] and json.loads((tmp_path / "state.json").read_text())["hosts"] == {}
    assert {r["reason"] for r in report if r["answer"] == "absent"} == {"cap-exceeded"}


def test_default_caps_are_conservative(sat, service, tmp_path):
    populate(sat, service, guests=100, gone=6)  # 6% of 100 is over the default 5%
    args = ("--satellite-url", sat.url, "--satellite-user", "admin", "--service-url", service.url)
    args += ("--state-file", str(tmp_path / "s.json"), "--apply", "--allow-plain-http")
    out = io.StringIO()
    env = {"INSTANCEAPI_REAP_SATELLITE_PASSWORD": sat.password}
    assert main(list(args), env=env, stdout=out) == 5
    assert "--max-delete-percent 5" in out.getvalue() and sat.deleted == []


@pytest.mark.parametrize(
    ("mode", "detail"), [("error", "HTTP 500"), ("bare-404", "without the absence marker")]
)
def test_doubtful_answers_keep_everything_and_unmark(sat, service, tmp_path, mode, detail):
    populate(sat, service)
    reap(sat, service.url, tmp_path, "--apply")
    service.mode = mode
    status, out, report = reap(sat, service.url, tmp_path, "--apply", now=T0 + timedelta(hours=2))
    assert status == 6, out
    assert sat.deleted == []
    candidates = [r for r in report if r["action"] != "skip"]
    assert {r["reason"] for r in candidates} == {"no-authoritative-answer"}
    assert all(detail in r["detail"] for r in candidates)
    assert json.loads((tmp_path / "state.json").read_text())["hosts"] == {}


def test_an_unreachable_or_unready_service_stops_the_run_before_anything(sat, service, tmp_path):
    populate(sat, service)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{sock.getsockname()[1]}"
    for url in (refused, service.url + "/wrong/prefix"):
        status, out, report = reap(sat, url, tmp_path, "--apply", "--confirm-runs", "1")
        assert status == 4 and report == [], out
        assert "service not ready, nothing done" in out
    service.ready_budget = 0
    status, out, _ = reap(sat, service.url, tmp_path, "--apply", "--confirm-runs", "1")
    assert status == 4 and "HTTP 503" in out
    assert sat.deleted == [] and sat.requests["GET /api/v2/hosts"] == 0


def test_readiness_is_checked_again_right_before_deleting(sat, service, tmp_path):
    gone = populate(sat, service)
    service.ready_budget = 1
    status, out, report = reap(sat, service.url, tmp_path, "--apply", "--confirm-runs", "1")
    assert status == 4 and sat.deleted == [], out
    assert {r["reason"] for r in report if r["host"] in gone} == {"service-not-ready"}
    assert json.loads((tmp_path / "state.json").read_text())["hosts"] == {}


def test_canary_must_exist(sat, service, tmp_path):
    populate(sat, service)
    status, out, _ = reap(sat, service.url, tmp_path, "--canary", UUID.format(0))
    assert status == 4 and "canary" in out
    status, out, _ = reap(sat, service.url, tmp_path, "--canary", UUID.format(49))
    assert status == 0, out


def test_pagination_over_several_pages(sat, service, tmp_path):
    gone = populate(sat, service)
    args = ("--apply", "--confirm-runs", "1", "--per-page", "7")
    status, _, report = reap(sat, service.url, tmp_path, *args)
    assert status == 0 and set(sat.deleted) == gone
    assert len(report) == 54
    assert sat.requests["GET /api/v2/hosts"] == 8  # 54 hosts, 7 a page
    # Fact values are read until an empty page: 51 uuids, 53 product names, 7 a page.
    assert sat.requests["GET /api/v2/fact_values"] == (8 + 1) + (8 + 1) + 10  # + 10 re-reads


def test_an_unreadable_satellite_aborts(sat, service, tmp_path):
    populate(sat, service)
    sat.fail_requests("/api/v2/fact_values", page=1, times=100)
    args = ("--apply", "--confirm-runs", "1", "--satellite-retries", "0")
    status, out, report = reap(sat, service.url, tmp_path, *args)
    assert status == 3 and report == [] and sat.deleted == [], out
    assert service.requests == {}


def test_a_failed_delete_is_reported_and_the_rest_proceed(sat, service, tmp_path):
    gone = populate(sat, service)
    sat.fail_delete("vm003.cloud.example.com")
    status, out, report = reap(sat, service.url, tmp_path, "--apply", "--confirm-runs", "1")
    assert status == 1, out
    assert set(sat.deleted) == gone - {"vm003.cloud.example.com"}
    assert "Failed deletions:" in out and "vm003.cloud.example.com" in out
    failed = [r for r in report if r["outcome"].startswith("delete-failed")]
    assert [r["host"] for r in failed] == ["vm003.cloud.example.com"]
    assert len(audit_lines(tmp_path)) == 54
    state = json.loads((tmp_path / "state.json").read_text())["hosts"]
    assert [v["name"] for v in state.values()] == ["vm003.cloud.example.com"]


@pytest.mark.parametrize("bulk", [False, True])
def test_bulk_and_single_checks_agree(sat, service, tmp_path, bulk):
    gone = populate(sat, service)
    service.bulk = bulk
    status, _, report = reap(sat, service.url, tmp_path, "--batch-size", "20")
    assert status == 0 and absent_names(report) == gone
    expected = {"POST": 3} if bulk else {"POST": 1, "GET": 50}
    assert service.requests == expected


def test_a_misordered_bulk_answer_is_not_trusted(sat, service, tmp_path):
    populate(sat, service)
    service.mode = "misordered"
    status, _, report = reap(sat, service.url, tmp_path, "--apply", "--confirm-runs", "1")
    assert status == 6 and sat.deleted == []
    assert absent_names(report) == set()


def test_a_service_token_is_read_from_a_file(sat, service, tmp_path):
    gone = populate(sat, service)
    service.token = "t0ken"
    status, out, report = reap(sat, service.url, tmp_path)
    assert status == 4 and "HTTP 401" in out
    (tmp_path / "token").write_text("t0ken\n")
    status, out, report = reap(
        sat, service.url, tmp_path, "--service-token-file", str(tmp_path / "token")
    )
    assert status == 0 and absent_names(report) == gone, out


def figures(path) -> dict[str, float]:
    """Read a --metrics-file as Prometheus would: {"name{labels}": value}."""
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for family in text_string_to_metric_families(path.read_text()):
        assert family.type == "gauge"
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            found[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return found


def test_metrics_file_counts_a_run_with_a_failed_deletion(sat, service, tmp_path):
    populate(sat, service)
    sat.fail_delete("vm003.cloud.example.com")
    path = tmp_path / "instanceapi-reap.prom"
    before = time.time()
    status, out, _ = reap(sat, service.url, tmp_path, "--apply", "--confirm-runs", "1",
                          "--metrics-file", str(path))  # fmt: skip
    assert status == 1, out
    got = figures(path)
    p = "instanceapi_reap_"
    assert {k: v for k, v in got.items() if "timestamp" not in k} == {
        f"{p}last_run_exit_status": 1,
        f"{p}last_run_apply": 1,
        f"{p}last_run_hosts_read": 54,
        f"{p}last_run_candidates": 50,
        f"{p}last_run_absent": 10,
        f"{p}last_run_deleted": 9,
        f"{p}last_run_failed_deletions": 1,
        f"{p}last_run_pending": 0,
        f'{p}last_run_kept{{reason="present"}}': 40,
    }
    start, end = (
        got[f"{p}last_run_start_timestamp_seconds"],
        got[f"{p}last_run_end_timestamp_seconds"],
    )
    assert before <= start <= end <= time.time()
    assert f"{p}last_success_timestamp_seconds" not in got  # never succeeded
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in tmp_path.glob("*.prom*")) == [path.name]  # no temp file left


def test_metrics_file_keeps_the_last_success_through_failed_runs(sat, service, tmp_path):
    populate(sat, service)
    path = tmp_path / "reap.prom"
    status, out, _ = reap(sat, service.url, tmp_path, "--metrics-file", str(path))
    assert status == 0, out
    success = figures(path)["instanceapi_reap_last_success_timestamp_seconds"]
    assert success == figures(path)["instanceapi_reap_last_run_end_timestamp_seconds"]
    inode = path.stat().st_ino
    sat.fail_requests("/api/v2/fact_values", page=1, times=100)
    status, out, _ = reap(sat, service.url, tmp_path, "--satellite-retries", "0",
                          "--metrics-file", str(path))  # fmt: skip
    assert status == 3, out
    got = figures(path)
    assert got["instanceapi_reap_last_run_exit_status"] == 3
    assert got["instanceapi_reap_last_success_timestamp_seconds"] == success
    assert got["instanceapi_reap_last_run_start_timestamp_seconds"] > success
    assert got["instanceapi_reap_last_run_candidates"] == 0
    assert path.stat().st_ino != inode  # replaced by a rename, never rewritten in place


def test_metrics_file_after_a_cap_names_the_held_hosts(sat, service, tmp_path):
    populate(sat, service)
    path = tmp_path / "reap.prom"
    status, out, _ = reap(sat, service.url, tmp_path, "--apply", "--metrics-file", str(path),
                          caps=("5", "100"))  # fmt: skip
    assert status == 5, out
    got = figures(path)
    assert got["instanceapi_reap_last_run_exit_status"] == 5
    assert got['instanceapi_reap_last_run_kept{reason="cap-exceeded"}'] == 10
    assert got["instanceapi_reap_last_run_deleted"] == 0


def test_metrics_file_in_a_missing_directory_stops_before_anything(sat, service, tmp_path):
    populate(sat, service)
    err = io.StringIO()
    argv = ["--satellite-url", sat.url, "--satellite-user", sat.user, "--service-url",
            service.url, "--state-file", str(tmp_path / "state.json"),
            "--metrics-file", str(tmp_path / "no" / "reap.prom")]  # fmt: skip
    env = {"INSTANCEAPI_REAP_SATELLITE_PASSWORD": sat.password}
    assert main(argv, env=env, stderr=err) == 2
    assert "--metrics-file: no directory" in err.getvalue()
    assert service.requests == {} and sat.requests["GET /api/v2/hosts"] == 0


def test_metrics_file_records_a_usage_error(tmp_path):
    path = tmp_path / "reap.prom"
    err = io.StringIO()
    assert main(["--metrics-file", str(path)], env={}, stderr=err) == 2, err.getvalue()
    assert figures(path)["instanceapi_reap_last_run_exit_status"] == 2
