"""reap against the simulated Satellite where the real Foreman API differs from the docs.

Each test names the item of issue 10 (or 11) it covers; every one of them fails on
the code before that fix.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import stat
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests
import requests_mock

from instanceapi.reap.cli import build_parser, main
from instanceapi.reap.config import resolve
from instanceapi.reap.model import Answer
from instanceapi.reap.service import ServiceClient, build_session
from instanceapi.testing.satellite import SimulatedSatellite
from instanceapi.testing.satellite.auth import RESOURCE_TYPES
from tests.fake_service import T0, UUID, FakeService, populate, serve
from tests.fakes import big_satellite

DOCS = Path(__file__).resolve().parent.parent / "docs" / "satellite.md"


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
    fake_service.detail = ""
    fake_service.requests.clear()
    return fake_service


@pytest.fixture
def sat():
    with SimulatedSatellite() as sim:
        yield sim


def reap(sat, service, tmp_path, *extra, hours=0, user=None, password=None):
    out = io.StringIO()
    argv = [
        "--satellite-url", sat.url, "--satellite-user", user or sat.user,
        "--service-url", service.url, "--allow-plain-http",
        "--state-file", str(tmp_path / "state.json"), "--audit-log", str(tmp_path / "audit.jsonl"),
        "--report", str(tmp_path / "report.json"),
        "--now", (T0 + timedelta(hours=hours)).isoformat(), *extra,
    ]  # fmt: skip
    env = {"INSTANCEAPI_REAP_SATELLITE_PASSWORD": password or sat.password}
    status = main(argv, env=env, stdout=out, stderr=out)
    path = tmp_path / "report.json"
    report = {r["host"]: r for r in json.loads(path.read_text())} if path.exists() else {}
    return status, out.getvalue(), report


def marks(tmp_path) -> dict:
    return json.loads((tmp_path / "state.json").read_text())["hosts"]


def test_item1_gone_guests_beyond_the_first_500_fact_rows_are_deleted(sat, service, tmp_path):
    """1,300 hosts; the 6 gone guests are the last rows in either order of fact values."""
    gone = big_satellite(sat, service.existing)
    status, out, report = reap(sat, service, tmp_path, "--apply")
    assert status == 0, out
    assert {h for h, r in report.items() if r["action"] == "pending"} == gone
    status, out, report = reap(sat, service, tmp_path, "--apply", hours=2)
    assert status == 0, out
    assert set(sat.deleted) == gone and len(sat.deleted) == 6
    assert sum(r["action"] == "skip" for r in report.values()) == 1150
    # 1,300 hosts 500 a page; 1,300 uuids and 1,300 product names until an empty page.
    assert sat.requests["GET /api/v2/hosts"] == 2 * 3
    assert sat.requests["GET /api/v2/fact_values"] == 2 * (4 + 4) + 2 * 6  # + re-reads


def test_item1_fact_values_are_narrowed_to_the_organization(sat, service, tmp_path):
    populate(sat, service, guests=20, gone=1, organization="ACME")
    sat.add_guest("other.example.com", UUID.format(500), organization="Other")
    status, out, report = reap(sat, service, tmp_path, "--organization", "ACME")
    assert status == 0 and "other.example.com" not in report, out
    searches = [s for s in sat.searches["GET /api/v2/fact_values"] if s.startswith("fact =")]
    assert len(searches) == 4 and all(re.search(r"organization_id = \d+$", s) for s in searches)


def test_item3_a_host_taken_over_before_the_delete_is_kept(sat, service, tmp_path):
    gone = populate(sat, service, guests=50, gone=2)
    service.existing.add(UUID.format(900))
    victim = sorted(gone)[0]
    reap(sat, service, tmp_path, "--apply")
    # Run 2 lists the host with its old virt::uuid; the takeover lands before the re-read.
    sat.before("GET /api/v2/hosts/:id", lambda: sat.reregister(victim, UUID.format(900)))
    status, out, report = reap(sat, service, tmp_path, "--apply", hours=2)
    assert status == 0, out
    assert victim not in sat.deleted and set(sat.deleted) == gone - {victim}
    assert report[victim]["reason"] == "uuid-changed"


def test_item4_protection_the_user_cannot_see_refuses_apply(sat, service, tmp_path):
    gone = populate(sat, service, guests=50, gone=2)
    protected = sorted(gone)[0]
    sat.host(protected).parameters["instanceapi_protect"] = "true"
    sat.add_user("reaper", "pw", {"view_hosts", "view_facts", "destroy_hosts"})  # the old recipe
    for hours in (0, 2):
        status, out, report = reap(
            sat, service, tmp_path, "--apply", hours=hours, user="reaper", password="pw"
        )
        assert status == 2, out
    assert "view_params" in out and sat.deleted == []
    assert {report[h]["reason"] for h in gone} == {"params-hidden"}


def test_item4_a_hidden_protection_value_protects(sat, service, tmp_path):
    gone = populate(sat, service, guests=50, gone=2)
    protected = sorted(gone)[0]
    host = sat.host(protected)
    host.inherited_parameters["instanceapi_protect"] = "true"
    host.hidden.add("instanceapi_protect")
    sat.add_user("reaper", "pw", {"view_hosts", "view_facts", "view_params", "destroy_hosts"})
    for hours in (0, 2):
        status, out, report = reap(
            sat, service, tmp_path, "--apply", hours=hours, user="reaper", password="pw"
        )
    assert status == 0, out
    assert report[protected]["reason"] == "protected"
    assert set(sat.deleted) == gone - {protected}


def test_item5_a_delete_answered_200_but_not_done_is_a_failure(sat, service, tmp_path):
    gone = populate(sat, service, guests=50, gone=2)
    survivor = sorted(gone)[0]
    sat.fail_delete(survivor)  # Katello: 200, the record survives
    status, out, report = reap(sat, service, tmp_path, "--apply", "--confirm-runs", "1")
    assert status == 1, out
    assert report[survivor]["outcome"].startswith("delete-failed")
    assert "still there" in report[survivor]["outcome"]
    assert [m["name"] for m in marks(tmp_path).values()] == [survivor]
    assert set(sat.deleted) == gone - {survivor}


@pytest.mark.parametrize("stop", ["cap", "gate"])
def test_item6_a_stopped_run_still_drops_the_marks_of_hosts_seen_present(
    sat, service, tmp_path, stop
):
    populate(sat, service, guests=50, gone=1)
    host = "vm000.cloud.example.com"
    reap(sat, service, tmp_path, "--apply", "--max-delete", "1")
    assert [m["name"] for m in marks(tmp_path).values()] == [host]
    service.existing.add(UUID.format(0))  # run 2 sees it present ...
    if stop == "cap":
        service.existing -= {UUID.format(n) for n in range(10, 13)}  # ... and stops at a cap
        status, out, _ = reap(sat, service, tmp_path, "--apply", "--max-delete", "1", hours=2)
        assert status == 5, out
        service.existing |= {UUID.format(n) for n in range(10, 13)}
    else:
        service.existing.discard(UUID.format(20))  # ... and a new absent host is due
        service.ready_budget = 1  # ... but the second readiness gate fails
        args = ("--apply", "--confirm-runs", "1", "--max-delete", "1")
        status, out, _ = reap(sat, service, tmp_path, *args, hours=2)
        assert status == 4, out
        service.ready_budget = 10**9
        service.existing.add(UUID.format(20))
    assert host not in [m["name"] for m in marks(tmp_path).values()]
    service.existing.discard(UUID.format(0))  # run 3 sees it absent: 1/2 again, not deleted
    status, out, report = reap(sat, service, tmp_path, "--apply", "--max-delete", "1", hours=4)
    assert status == 0 and sat.deleted == [], out
    assert report[host]["outcome"] == "marked 1/2"


def role_permissions() -> list[set[str]]:
    """Return the permission sets of the `hammer filter create` lines in docs/satellite.md."""
    text = DOCS.read_text()
    block = text.split("<!-- role-recipe -->")[1]
    filters = re.findall(r"hammer filter create .*--permissions (\S+)", block)
    assert "hammer role create --name instanceapi-reap" in block
    assert "hammer user add-role --login instanceapi-reap --role instanceapi-reap" in block
    return [set(f.split(",")) for f in filters]


def reap_as_role(service, tmp_path, permissions: set[str]) -> tuple[int, str, set[str], set[str]]:
    """Run reap --apply twice as a user holding `permissions`, on a fresh Satellite.

    Return the last status and output, the hosts deleted and those that had to go.
    """
    with SimulatedSatellite() as sim:
        gone = populate(sim, service, guests=50, gone=2)
        protected = sorted(gone)[0]
        sim.host(protected).parameters["instanceapi_protect"] = "yes"
        sim.add_user("instanceapi-reap", "pw", permissions, tokens={"pat-123"})
        for hours in (0, 2):  # a personal access token works as the password
            status, out, _ = reap(
                sim, service, tmp_path, "--apply", hours=hours, user="instanceapi-reap",
                password="pat-123",
            )  # fmt: skip
        return status, out, set(sim.deleted), gone - {protected}


def test_the_documented_role_has_exactly_the_permissions_reap_needs(service, tmp_path):
    filters = role_permissions()
    for perms in filters:  # Foreman: one resource type per filter
        assert len({RESOURCE_TYPES[p] for p in perms}) == 1, perms
    needed = set().union(*filters)
    status, out, deleted, expected = reap_as_role(service, tmp_path / "all", needed)
    assert status == 0 and deleted == expected, out
    for missing in sorted(needed):  # each one is needed: without it nothing is deleted
        (tmp_path / missing).mkdir()
        status, out, deleted, _ = reap_as_role(service, tmp_path / missing, needed - {missing})
        assert status != 0 and deleted == set(), (missing, out)


def test_issue11_reports_are_private_and_csv_cells_are_inert(sat, service, tmp_path):
    populate(sat, service, guests=30, gone=0)
    sat.add_host("evil.example.com", uuid='=HYPERLINK("http://x","y")', product="OpenStack Nova")
    report = tmp_path / "plan.csv"
    report.write_text("old\n")
    report.chmod(0o644)
    status, out, _ = reap(sat, service, tmp_path, "--report", str(report))
    assert status == 0, out
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    line = next(ln for ln in report.read_text().splitlines() if "evil" in ln)
    assert ",'=HYPERLINK(" in line.replace('"', "")


def test_issue11_a_rolling_budget_bounds_deletions_across_runs(sat, service, tmp_path):
    populate(sat, service, guests=200, gone=0)
    rails = ("--apply", "--confirm-runs", "1", "--max-delete-percent", "100")
    for day in range(8):  # 8 daily runs, one more gone host each: every run within its caps
        service.existing.discard(UUID.format(10 + day))
        status, out, _ = reap(sat, service, tmp_path, *rails, "--max-delete", "10", "--budget",
                              "3", hours=24 * day)  # fmt: skip
        assert status in (0, 5), out
    # Days 0, 1 and 2 spend the budget of 3; day 7 gets back day 0's.
    assert len(sat.deleted) == 4 and "budget-exhausted" in out
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    times = sorted(datetime.fromisoformat(a["time"]) for a in audit if a["outcome"] == "deleted")
    for when in times:
        assert sum(when - timedelta(days=7) < t <= when for t in times) <= 3


def test_issue11_the_budget_defaults_to_max_delete_per_week(sat, service, tmp_path):
    populate(sat, service, guests=200, gone=0)
    rails = ("--apply", "--confirm-runs", "1", "--max-delete-percent", "100", "--max-delete", "2")
    for day in range(4):
        service.existing.discard(UUID.format(10 + day))
        reap(sat, service, tmp_path, *rails, hours=24 * day)
        service.existing.add(UUID.format(10 + day))  # the next run sees only the new one
    assert len(sat.deleted) == 2


def test_issue11_a_huge_detail_is_truncated_in_the_audit_log(sat, service, tmp_path):
    populate(sat, service, guests=20, gone=1)
    service.detail = "x" * 200_000
    status, out, _ = reap(sat, service, tmp_path)
    assert status == 0, out
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert max(len(line) for line in lines) < 2000


def test_the_shipped_unit_and_env_example_make_a_valid_configuration(tmp_path):
    root = DOCS.parent.parent
    unit = (root / "deploy/systemd/instanceapi-reap.service").read_text()
    line = next(ln for ln in unit.replace("\\\n", " ").splitlines() if ln.startswith("ExecStart="))
    argv = shlex.split(line.removeprefix("ExecStart="))[2:]  # drop the program and "reap"
    argv = [a.replace("%d", str(tmp_path)).replace("%S", "/var/lib").replace("%L", "/var/log")
            for a in argv]  # fmt: skip
    (tmp_path / "satellite-password").write_text("pat\n")
    example = (root / "deploy/satellite/reap.env.example").read_text().splitlines()
    env = dict(ln.split("=", 1) for ln in example if ln and not ln.startswith("#"))
    config = resolve(build_parser().parse_args(argv), env)
    assert config.satellite_url.startswith("https://") and config.service_url.startswith("https://")
    assert config.settings.apply and config.settings.budget == 10
    assert config.settings.budget_window == timedelta(days=7)
    assert config.satellite_ca == "/etc/pki/tls/certs/katello-server-ca.crt"


def test_issue11_an_oversized_service_answer_is_no_answer():
    uuid = UUID.format(1)
    item = {"input": uuid, "uuid": uuid, "exists": False, "detail": "x" * 5000}
    with requests_mock.Mocker() as mocker:
        json_type = {"Content-Type": "application/json"}
        mocker.post("https://svc.example.com/check", json={"results": [item]}, headers=json_type)
        client = ServiceClient("https://svc.example.com", build_session(), max_bytes=4096)
        verdict = client.check_many([uuid])[uuid]
        assert verdict.answer is Answer.UNKNOWN and "over 4096 bytes" in verdict.detail
        roomy = ServiceClient("https://svc.example.com", build_session())
        verdict = roomy.check_many([uuid])[uuid]
        assert verdict.answer is Answer.ABSENT and len(verdict.detail) < 600


def test_a_host_deleted_by_someone_else_does_not_stop_the_run(sat, service, tmp_path):
    gone = populate(sat, service, guests=50, gone=2)
    first, second = sorted(gone)
    reap(sat, service, tmp_path, "--apply")
    host_id = sat.host(first).id
    url, auth = f"{sat.url}/api/v2/hosts/{host_id}", (sat.user, sat.password)
    sat.before(
        "GET /api/v2/hosts/:id/parameters",
        lambda: requests.delete(url, auth=auth, timeout=5),
    )
    status, out, report = reap(sat, service, tmp_path, "--apply", hours=2)
    assert sat.deleted == [first, second], out
    assert report[first]["reason"] == "detail-unavailable" and status == 0
