"""Issue 9, items 4 and 6: a cell that is down, and servers still being built (real Nova 34).

Unit tests fake Nova with requests-mock (tests/fakes.py); the others drive the
simulated cloud, which models both behaviours as shared/upstream-facts.md
records them, through the real keystoneauth1 + novaclient.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from falcon import testing

from instanceapi.check.checker import Checker, RegionChecker
from instanceapi.check.refresher.loop import Refresher
from instanceapi.check.visibility import Rule
from instanceapi.config import RegionSpec, Settings
from instanceapi.http.app import create_app
from instanceapi.metrics import Metrics
from instanceapi.openstack import NovaRegion
from instanceapi.testing import SimulatedCloud
from instanceapi.testing.clients import password_session
from instanceapi.verdict import Presence
from tests.fakes import FakeCloud, checker_for, new_uuid, nova_time

OTHER_PROJECT = "0" * 32
READER = ("reader",)
SETTINGS = Settings(regions=(RegionSpec("cloud"),))


def client_for(cloud: FakeCloud) -> testing.TestClient:
    return testing.TestClient(create_app(SETTINGS, checker=checker_for(cloud)))


# -- the listing rule never decides absence from an omission ------------------------------------


def test_listing_rule_does_not_trust_a_listing_read_while_a_cell_was_down(requests_mock):
    """Item 4: a full listing read during the outage lacks the server; after it, no false 404."""
    cloud = FakeCloud(requests_mock, roles=READER, can_list_all=True)
    cloud.add(project_id=OTHER_PROJECT)
    theirs = cloud.add(project_id=OTHER_PROJECT)
    cloud.servers[theirs]["updated"] = nova_time(-3600)  # unchanged for an hour
    cloud.down.add(theirs)
    checker = checker_for(cloud)
    client = testing.TestClient(create_app(SETTINGS, checker=checker))
    assert client.simulate_get(f"/check/{theirs}").status_code == 500  # 200 UNKNOWN by id
    checker.regions[0].refresh_index()  # the background refresh, during the outage
    cloud.down.clear()  # the cell answers again: the reader's GET is 404 once more
    answer = client.simulate_get(f"/check/{theirs}")
    assert answer.status_code == 500, answer.json
    assert "unreachable cell or still being built" in answer.json["detail"]


def test_listing_rule_does_not_trust_a_changes_since_listing_missing_a_new_server(requests_mock):
    """Item 6: just scheduled, not yet in changes-since listings, and 404 to the reader by id."""
    cloud = FakeCloud(requests_mock, roles=READER, can_list_all=True)
    cloud.add(project_id=OTHER_PROJECT)
    client = client_for(cloud)
    gone = cloud.add("DELETED", project_id=OTHER_PROJECT)
    assert client.simulate_get(f"/check/{gone}").status_code == 404  # a DELETED record proves it
    new = new_uuid()  # created by Nova, not listed by changes-since yet
    answer = client.simulate_get(f"/check/{new}")
    assert answer.status_code == 500
    assert answer.headers["Instance-Exists"] == "unknown"


# -- a full listing that may have skipped a cell is known incomplete ----------------------------


def test_index_read_while_a_cell_is_down_is_incomplete_then_reread_at_once(requests_mock):
    cloud = FakeCloud(requests_mock)
    hidden = cloud.add(project_id=OTHER_PROJECT)
    cloud.add(project_id=OTHER_PROJECT)
    cloud.down.add(hidden)
    region = RegionChecker(cloud.nova())
    metrics = Metrics()
    refresher = Refresher([region], interval=1000.0, metrics=metrics)
    complete = {"target": region.nova.name}
    refresher.run_once()
    assert region.index.peek(hidden) is None
    assert "1 server(s) as UNKNOWN" in (region.readiness() or "")
    assert metrics.registry.get_sample_value("instanceapi_index_complete", complete) == 0
    cloud.down.clear()
    full_listings = cloud.calls("GET", "limit=")
    region.refresh_index()  # the next refresh, long before the resync interval
    assert region.index.peek(hidden) == "ACTIVE"
    assert region.index.incomplete is None and region.readiness() is None
    assert cloud.calls("GET", "limit=") == full_listings + 1
    assert "changes-since" not in requests_mock.request_history[-1].url  # a full listing
    refresher._due = dict.fromkeys(refresher._due, 0.0)
    refresher.run_once()
    assert metrics.registry.get_sample_value("instanceapi_index_complete", complete) == 1


def test_the_refresher_checks_cells_once_per_interval_and_every_refresh_while_incomplete(
    requests_mock,
):
    class Clock:
        now = 1_000.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    cloud = FakeCloud(requests_mock)
    hidden = cloud.add(project_id=OTHER_PROJECT)
    cloud.add(project_id=OTHER_PROJECT)
    region = RegionChecker(cloud.nova(), cells_interval=300.0, clock=clock)

    def cell_checks() -> int:
        return cloud.calls("GET", "/servers?all_tenants=1")

    for _ in range(4):  # a poll every 15 s: one unfiltered page in all
        region.refresh_index()
        clock.now += 15
    assert cell_checks() == 1

    cloud.down.add(hidden)
    region.refresh_index()  # within the interval: not seen yet (readiness only)
    assert cell_checks() == 1 and region.index.incomplete is None
    clock.now += 300
    region.refresh_index()
    assert cell_checks() == 2 and region.index.incomplete is not None
    for _ in range(2):  # while incomplete, every refresh looks: the return is seen at once
        clock.now += 15
        region.refresh_index()
    assert cell_checks() == 4
    cloud.down.clear()
    clock.now += 15
    region.refresh_index()
    assert region.index.incomplete is None and region.index.peek(hidden) == "ACTIVE"


# -- the visibility probe ------------------------------------------------------------------------


def test_probe_does_not_count_an_unknown_record_as_visibility(requests_mock):
    """Item 4: the cell of the probed server went down between listing and GET."""
    cloud = FakeCloud(requests_mock, roles=READER, can_list_all=True)
    theirs = cloud.add(project_id=OTHER_PROJECT)
    stub = {"server": {"id": theirs, "status": "UNKNOWN", "tenant_id": OTHER_PROJECT}}
    cloud.fail(rf".*/servers/{theirs}$", json=stub)
    answer = client_for(cloud).simulate_get(f"/check/{new_uuid()}")
    assert answer.status_code == 500
    assert "lack all-project visibility" in answer.json["detail"]


def test_probe_uses_only_servers_past_building(requests_mock, caplog):
    """Item 6: a server still being built answers GET even to a reader of another project."""
    cloud = FakeCloud(requests_mock, roles=READER, can_list_all=True)
    building = cloud.add("BUILD", project_id=OTHER_PROJECT)  # listed first
    built = cloud.add(project_id=OTHER_PROJECT)
    record = {**cloud.servers[building], "OS-EXT-STS:vm_state": "building"}
    cloud.fail(rf".*/servers/{building}$", json={"server": record})
    caplog.set_level(logging.INFO, logger="instanceapi.check.visibility")
    answer = client_for(cloud).simulate_get(f"/check/{new_uuid()}")
    assert answer.status_code == 500  # the listing rule, never the by-id rule
    assert cloud.calls("GET", f"/servers/{building}") == 0
    assert f"server {built} answered 404" in caplog.text  # which server the probe used
    assert built not in answer.text


# -- the by-id rule stays safe under the real behaviour (simulated cloud) ----------------------


@pytest.fixture
def sim() -> Iterator[SimulatedCloud]:
    with SimulatedCloud(max_limit=3) as running:
        for _ in range(4):
            running.add_server(project="gamma")
        yield running


def checker_on(cloud: SimulatedCloud, user: str) -> Checker:
    nova = NovaRegion(
        cloud="demo",
        region="RegionOne",
        session=password_session(cloud, user),
        interface="public",
        retries=0,
    )
    return Checker([RegionChecker(nova)], absent_cache_size=0)


@pytest.mark.parametrize("microversion", ["2.96", "2.60"])
def test_by_id_rule_never_404s_a_down_cells_server_even_deleted(sim, microversion):
    live = sim.add_server(project="beta", cell="cell2").id
    deleted = sim.add_server(project="beta", cell="cell2").id
    sim.delete_server(deleted)
    sim.set_max_microversion(microversion)
    checker = checker_on(sim, "admin")
    assert checker.regions[0].visibility.current().rule is Rule.BY_ID
    sim.set_cell_down("cell2")
    for uuid in (live, deleted):
        verdict = checker.check(uuid)
        assert verdict.presence is Presence.UNKNOWN, verdict
    sim.set_cell_down("cell2", down=False)
    assert checker.check(live).presence is Presence.PRESENT
    assert checker.check(deleted).presence is Presence.ABSENT


def test_reader_never_gets_a_404_for_a_down_cells_server_nor_after_it_comes_back(sim):
    theirs = sim.add_server(project="beta", cell="cell2").id
    sim.set_cell_down("cell2")
    checker = checker_on(sim, "reader-all")
    region = checker.regions[0]
    region.refresh_index()  # the full listing skips cell2, silently
    assert region.visibility.current().rule is Rule.LISTING
    assert region.index.incomplete
    assert checker.check(theirs).presence is Presence.UNKNOWN  # 200 UNKNOWN by id
    sim.set_cell_down("cell2", down=False)
    assert checker.check(theirs).presence is Presence.PRESENT  # changed lately: listed again
    region.refresh_index()  # cells answer: read in full again at once
    assert region.index.incomplete is None
    assert checker.check(theirs).presence is Presence.PRESENT


def test_probe_of_a_reader_ignores_a_server_being_built(sim):
    """Item 6, on the simulated Nova: the newest server of another project is being built."""
    sim.add_server(project="gamma", stage="unscheduled")
    checker = checker_on(sim, "reader-all")
    assert checker.regions[0].visibility.current().rule is Rule.LISTING
    assert checker.check(new_uuid()).presence is Presence.UNKNOWN


def test_listing_rule_across_regions_needs_a_deleted_record_somewhere(requests_mock):
    """A UUID names one instance: deleted in one region, it is in no other (nor its twin)."""
    one = FakeCloud(requests_mock, roles=READER, can_list_all=True)
    two = FakeCloud(requests_mock, roles=READER, can_list_all=True, region="RegionTwo")
    for cloud in (one, two):
        cloud.add(project_id=OTHER_PROJECT)
    gone = one.add("DELETED", project_id=OTHER_PROJECT)
    client = testing.TestClient(create_app(SETTINGS, checker=checker_for(one, two)))
    answer = client.simulate_get(f"/check/{gone}")
    assert answer.status_code == 404, answer.json
    assert {t["rule"] for t in answer.json["targets"]} >= {"listing", "deleted-elsewhere"}
    never = client.simulate_get(f"/check/{new_uuid()}")
    assert never.status_code == 500
    assert {t["rule"] for t in never.json["targets"]} == {"not-listed"}
