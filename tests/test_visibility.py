"""Fail closed on identity: a 404 counts as absence only with proven all-project visibility."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest
from falcon import testing

from instanceapi.check.checker import Checker, RegionChecker
from instanceapi.check.refresher.loop import Refresher
from instanceapi.check.visibility import Rule, probe
from instanceapi.http.app import create_app
from instanceapi.openstack import UpstreamError
from tests.fakes import SETTINGS, FakeCloud, checker_for, client_for, new_uuid, not_found

OTHER_PROJECT = "0" * 32
READER = ("reader",)
MEMBER = ("member", "reader")


def test_admin_proven_by_cross_project_get(requests_mock):
    cloud = FakeCloud(requests_mock)
    cloud.add(project_id=OTHER_PROJECT)
    result = client_for(cloud).simulate_get(f"/check/{new_uuid()}")
    assert result.status_code == 404
    assert "another project's server answered 200" in result.json["targets"][0]["detail"]


def test_admin_without_probe_server_relies_on_admin_role(requests_mock):
    cloud = FakeCloud(requests_mock)
    result = client_for(cloud).simulate_get(f"/check/{new_uuid()}")
    assert result.status_code == 404
    assert "admin role" in result.json["targets"][0]["detail"]


@pytest.mark.parametrize("roles", [MEMBER, READER])
def test_no_all_project_listing_never_gives_404(requests_mock, roles):
    cloud = FakeCloud(requests_mock, roles=roles)
    mine = cloud.add()
    theirs = cloud.add(project_id=OTHER_PROJECT)
    client = client_for(cloud)
    assert client.simulate_get(f"/check/{mine}").status_code == 200
    for uuid in (theirs, new_uuid()):
        result = client.simulate_get(f"/check/{uuid}")
        assert result.status_code == 500
        assert "lack all-project visibility" in result.json["detail"]
        assert "403" in result.json["detail"]


def test_reader_with_listing_override_decides_by_listing(requests_mock):
    cloud = FakeCloud(requests_mock, roles=READER, can_list_all=True, page_size=2)
    theirs = [cloud.add(project_id=OTHER_PROJECT) for _ in range(5)]
    client = client_for(cloud)

    present = client.simulate_get(f"/check/{theirs[-1]}")
    assert present.status_code == 200
    assert present.json["rule"] == "listing"

    gone = cloud.add("DELETED", project_id=OTHER_PROJECT)
    absent = client.simulate_get(f"/check/{gone}")
    assert absent.status_code == 404
    assert absent.json["targets"][0]["rule"] == "listing"
    assert "reports it DELETED" in absent.json["targets"][0]["detail"]


def test_listing_rule_reads_every_page_and_sees_soft_deleted(requests_mock):
    cloud = FakeCloud(requests_mock, roles=READER, can_list_all=True, page_size=3)
    for _ in range(10):
        cloud.add(project_id=OTHER_PROJECT)
    restorable = cloud.add("SOFT_DELETED", project_id=OTHER_PROJECT)
    first = cloud.add(project_id=OTHER_PROJECT)
    cloud.servers = dict(reversed(list(cloud.servers.items())))  # `first` now on the last page
    client = client_for(cloud)
    assert client.simulate_get(f"/check/{list(cloud.servers)[-1]}").status_code == 200
    assert client.simulate_get(f"/check/{restorable}").json["status"] == "SOFT_DELETED"
    assert client.simulate_get(f"/check/{first}").status_code == 200
    assert cloud.calls("GET", "changes-since=1970") >= 4  # 12 servers in pages of 3


def test_listing_rule_sees_instances_created_after_the_last_sync(requests_mock):
    cloud = FakeCloud(requests_mock, roles=READER, can_list_all=True)
    cloud.add(project_id=OTHER_PROJECT)
    client = client_for(cloud)
    assert client.simulate_get(f"/check/{new_uuid()}").status_code == 500  # only omitted
    late = cloud.add(project_id=OTHER_PROJECT)
    assert client.simulate_get(f"/check/{late}").status_code == 200


def test_listing_page_failing_midway_is_500(requests_mock):
    cloud = FakeCloud(requests_mock, roles=READER, can_list_all=True, page_size=2)
    servers = [cloud.add(project_id=OTHER_PROJECT) for _ in range(6)]
    client = client_for(cloud)
    client.simulate_get(f"/check/{servers[0]}")  # establishes the rule
    cloud.fail(rf".*/servers/detail\?.*marker={servers[1]}", status_code=500, text="boom")
    result = client.simulate_get(f"/check/{new_uuid()}")
    assert result.status_code == 500
    assert "GET /servers/detail failed: HTTP 500" in result.json["detail"]


def test_listing_rule_refuses_404_below_microversion_2_69(requests_mock):
    cloud = FakeCloud(requests_mock, roles=READER, can_list_all=True, max_microversion="2.60")
    cloud.add(project_id=OTHER_PROJECT)
    result = client_for(cloud).simulate_get(f"/check/{new_uuid()}")
    assert result.status_code == 500
    assert "needs microversion 2.69" in result.json["detail"]


def test_old_nova_still_answers_by_id(requests_mock, caplog):
    cloud = FakeCloud(requests_mock, max_microversion="2.60")
    uuid = cloud.add()
    client = client_for(cloud)
    assert client.simulate_get(f"/check/{uuid}").status_code == 200
    assert client.simulate_get(f"/check/{new_uuid()}").status_code == 404
    assert "offers microversion 2.60 only" in caplog.text
    sent = [r for r in requests_mock.request_history if "/servers/" in r.url]
    assert all(r.headers["OpenStack-API-Version"] == "compute 2.60" for r in sent)


def test_microversion_2_69_is_pinned(requests_mock):
    cloud = FakeCloud(requests_mock)
    uuid = cloud.add()
    client_for(cloud).simulate_get(f"/check/{uuid}")
    sent = [r for r in requests_mock.request_history if "/servers/" in r.url]
    assert sent and all(r.headers["OpenStack-API-Version"] == "compute 2.69" for r in sent)


def test_lost_visibility_is_noticed_at_the_next_probe(requests_mock):
    cloud = FakeCloud(requests_mock)
    cloud.add(project_id=OTHER_PROJECT)
    now = [1000.0]
    target = RegionChecker(cloud.nova(), visibility_interval=300.0, clock=lambda: now[0])
    client = testing.TestClient(create_app(SETTINGS, checker=Checker([target])))
    assert client.simulate_get(f"/check/{new_uuid()}").status_code == 404
    cloud.can_list_all = False  # e.g. the role was taken away
    assert client.simulate_get(f"/check/{new_uuid()}").status_code == 404  # not yet re-probed
    now[0] += 301
    result = client.simulate_get(f"/check/{new_uuid()}")
    assert result.status_code == 500
    assert "lack all-project visibility" in result.json["detail"]


def test_failed_probe_before_visibility_is_established_is_500(requests_mock):
    cloud = FakeCloud(requests_mock)
    cloud.fail(r".*/servers/detail", status_code=502, text="bad gateway")
    result = client_for(cloud).simulate_get(f"/check/{new_uuid()}")
    assert result.status_code == 500
    assert "not established yet" in result.json["detail"]


def ready_client(*clouds: FakeCloud) -> testing.TestClient:
    """A client whose targets had one refresher cycle (what /readyz reports on).

    The test client is on the allowlist: readiness detail is for such clients only.
    """
    checker = checker_for(*clouds)
    Refresher(checker.regions).run_once()
    local = dataclasses.replace(SETTINGS, allow_networks=(ipaddress.ip_network("127.0.0.1"),))
    return testing.TestClient(create_app(local, checker=checker))


def test_readiness_reports_each_target(requests_mock):
    good = FakeCloud(requests_mock, region="RegionOne")
    bad = FakeCloud(requests_mock, region="RegionTwo", roles=MEMBER)
    bad.fail(r".*keystone\.cloud-regiontwo.*", status_code=500, text="down")
    result = ready_client(good, bad).simulate_get("/readyz")
    assert result.status_code == 503
    states = {t["target"]: t["ready"] for t in result.json["targets"]}
    assert states == {"cloud/RegionOne": True, "cloud/RegionTwo": False}
    assert "Keystone" in result.json["targets"][1]["reason"]
    assert ready_client(good).simulate_get("/readyz").status_code == 200
    blind = FakeCloud(requests_mock, region="RegionThree", roles=MEMBER)
    answer = ready_client(blind).simulate_get("/readyz")
    assert answer.json["targets"][0]["rule"] == "none"
    assert answer.status_code == 503
    assert client_for(good).simulate_get("/readyz").status_code == 503  # nothing checked yet
    assert client_for(good).simulate_get("/healthz").json == {"status": "ok"}


def test_a_token_whose_roles_changed_does_not_inherit_the_by_id_rule(requests_mock):
    cloud = FakeCloud(requests_mock)
    cloud.add(project_id=OTHER_PROJECT)
    client = client_for(cloud)
    assert client.simulate_get(f"/check/{new_uuid()}").status_code == 404  # by-id, as admin
    # The admin role is removed: Keystone revokes the token, the next one is a member's.
    cloud.roles = MEMBER
    unknown = new_uuid()
    cloud.fail(
        rf".*/servers/{unknown}$",
        [
            {"status_code": 401, "json": {"error": {"code": 401}}},
            {"status_code": 404, "json": not_found(unknown)},
        ],
    )
    answer = client.simulate_get(f"/check/{unknown}")
    assert answer.status_code == 500
    assert "lack all-project visibility" in answer.json["detail"]
    assert cloud.calls("POST", "/auth/tokens") == 2


def test_a_401_is_retried_once_then_is_doubt(requests_mock):
    cloud = FakeCloud(requests_mock)
    client = client_for(cloud)
    uuid = cloud.add()
    cloud.fail(rf".*/servers/{uuid}$", status_code=401, json={"error": {"code": 401}})
    answer = client.simulate_get(f"/check/{uuid}")
    assert answer.status_code == 500
    assert "HTTP 401" in answer.json["detail"]
    # keystoneauth's own retry after re-authenticating, then ours, then its again.
    assert cloud.calls("GET", f"/servers/{uuid}") == 4


def test_listing_rule_survives_a_clock_ahead_of_novas(requests_mock):
    """This host's clock 10 minutes ahead of Nova's: changes-since must still see new servers."""
    import time

    cloud = FakeCloud(requests_mock, roles=READER, can_list_all=True)
    cloud.add(project_id=OTHER_PROJECT)
    gone = cloud.add("DELETED", project_id=OTHER_PROJECT)
    target = RegionChecker(cloud.nova(), wall=lambda: time.time() + 600)
    client = testing.TestClient(create_app(SETTINGS, checker=Checker([target])))
    assert client.simulate_get(f"/check/{gone}").status_code == 404  # full listing read
    late = cloud.add(project_id=OTHER_PROJECT)  # created now, by Nova's clock
    answer = client.simulate_get(f"/check/{late}")
    assert answer.status_code == 200, answer.json["detail"]
    assert answer.json["rule"] == "listing"
    assert cloud.calls("GET", "changes-since=1970") == 1  # the second read was incremental


@pytest.mark.parametrize(
    "body",
    [
        {"id": "someone-else", "status": "ACTIVE"},
        {"name": "no id", "status": "ACTIVE"},
        {"status": ["ACTIVE"]},
    ],
)
def test_a_probe_answered_with_another_record_proves_nothing(requests_mock, body):
    """A 200 that is not the server asked for is no proof; the next server is tried."""
    cloud = FakeCloud(requests_mock)
    odd = cloud.add(project_id=OTHER_PROJECT)
    cloud.fail(rf".*/servers/{odd}$", json={"server": body})
    with pytest.raises(UpstreamError, match="visibility probe inconclusive"):
        probe(cloud.nova(), 0.0)
    cloud.add(project_id=OTHER_PROJECT)
    assert probe(cloud.nova(), 0.0).rule is Rule.BY_ID
