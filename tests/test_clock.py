"""Steps of the wall clock (issue 9, item 2).

Every "which came first / how old" comparison uses a monotonic clock; the wall
clock, corrected by Nova's Date header, only builds changes-since values. The
tests step an injected wall clock back and forward around a question.
requests-mock at Nova's HTTP boundary, real keystoneauth1 + novaclient.
"""

from __future__ import annotations

import threading
import time

import pytest
from falcon import testing

from instanceapi.check.checker import Checker, RegionChecker
from instanceapi.http.app import create_app
from tests.fakes import SETTINGS, FakeCloud

OTHER_PROJECT = "0" * 32


class Wall:
    """The wall clock as NTP may leave it: real time plus a step."""

    def __init__(self) -> None:
        self.step = 0.0

    def __call__(self) -> float:
        return time.time() + self.step


@pytest.fixture
def listing_cloud(requests_mock):
    """A reader allowed to list all projects: absence only from the listing."""
    cloud = FakeCloud(requests_mock, roles=("reader",), can_list_all=True)
    cloud.add(project_id=OTHER_PROJECT)
    return cloud


def client_for(target: RegionChecker) -> testing.TestClient:
    return testing.TestClient(create_app(SETTINGS, checker=Checker([target])))


@pytest.mark.parametrize("step", [-120.0, -86400.0, 3600.0])
def test_a_server_created_after_a_wall_clock_step_is_never_absent(listing_cloud, step):
    wall = Wall()
    region = RegionChecker(listing_cloud.nova(), wall=wall)
    client = client_for(region)
    gone = listing_cloud.add("DELETED", project_id=OTHER_PROJECT)
    assert client.simulate_get(f"/check/{gone}").status_code == 404  # full listing read
    wall.step = step  # NTP steps the clock between the listing and the next question
    late = listing_cloud.add(project_id=OTHER_PROJECT)  # created now, by Nova's clock
    answer = client.simulate_get(f"/check/{late}")
    assert answer.status_code == 200, answer.json["detail"]
    assert answer.json["rule"] == "listing"
    later = listing_cloud.add("DELETED", project_id=OTHER_PROJECT)  # deleted after the step
    assert client.simulate_get(f"/check/{later}").status_code == 404  # still decides absence


def test_a_forward_step_does_not_age_the_index(listing_cloud):
    wall = Wall()
    region = RegionChecker(listing_cloud.nova(), wall=wall, max_index_age=300.0)
    region.refresh_index()
    wall.step = 3600.0
    age = region.index.age()
    assert age is not None and age < 60.0
    assert region.index_is_fresh()


def test_the_visibility_probe_schedule_ignores_wall_steps(listing_cloud):
    """A step back must not postpone the next re-probe (by a day here)."""
    now = [100.0]
    wall = Wall()
    region = RegionChecker(
        listing_cloud.nova(), clock=lambda: now[0], wall=wall, visibility_interval=300.0
    )
    region.visibility.current()
    probe = listing_cloud.compute_url + "/servers/detail?all_tenants=1"
    probes = listing_cloud.calls("GET", probe)
    assert probes >= 1
    wall.step = -86400.0
    now[0] += 300.0
    region.visibility.current()
    assert listing_cloud.calls("GET", probe) == probes + 1


def test_nova_calls_do_not_stall_after_the_wall_clock_steps_back(requests_mock, monkeypatch):
    """keystoneauth's adapters wait until time.time() passes their creation time."""
    cloud = FakeCloud(requests_mock)
    uuid = cloud.add()
    nova = cloud.nova()
    assert nova.show(uuid) is not None  # the compute adapter is made now
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 600.0)  # NTP: ten minutes back
    answers: list[object] = []
    call = threading.Thread(target=lambda: answers.append(nova.show(uuid)), daemon=True)
    call.start()
    call.join(10.0)
    assert not call.is_alive(), "the Nova call is waiting for the wall clock to catch up"
    assert answers and answers[0] is not None
