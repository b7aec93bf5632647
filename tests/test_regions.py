"""Regions of the catalog that the configuration does not name (issue 9, item 1).

Real keystoneauth1 + novaclient against the simulated cloud (two regions, one
Keystone whose catalog lists both) on 127.0.0.1, in process: the checker,
/readyz and doctor as `instanceapi serve` builds them.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml
from falcon import testing

from instanceapi import doctor
from instanceapi.check.catalog import RegionCoverage
from instanceapi.config import ConfigError, Settings
from instanceapi.http.app import build_checker, create_app
from instanceapi.openstack import build_regions
from instanceapi.testing import SimulatedCloud
from instanceapi.verdict import Presence


@pytest.fixture(scope="module")
def cloud():
    with SimulatedCloud(regions=("RegionOne", "RegionTwo")) as cloud:
        yield cloud


def clouds_yaml(cloud, path: Path, **shape) -> Path:
    """Write a clouds.yaml for admin with `shape` as its region keys (none: no region)."""
    cloud.write_clouds_yaml(path, cloud_name="demo")
    data = yaml.safe_load(path.read_text())
    entry = data["clouds"]["demo"]
    entry.pop("regions", None)
    entry.pop("region_name", None)
    entry.update(shape)
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def configure(cloud, tmp_path, monkeypatch):
    def configure(exclude: str = "", clouds: str = "demo", **shape) -> dict[str, str]:
        path = clouds_yaml(cloud, tmp_path / "clouds.yaml", **shape)
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
        # Readiness names targets and reasons to allowlisted clients only.
        env = {
            "INSTANCEAPI_CLOUDS": clouds,
            "INSTANCEAPI_TIMEOUT": "5",
            "INSTANCEAPI_ALLOW_CIDRS": "127.0.0.1",
        }
        if exclude:
            env["INSTANCEAPI_EXCLUDE_REGIONS"] = exclude
        return env

    return configure


def deleted(cloud, region: str = "RegionOne") -> str:
    server = cloud.add_server(project="beta", region=region)
    cloud.delete_server(server.id, region)
    return server.id


SHAPES = [
    pytest.param({"region_name": "RegionOne"}, id="region_name"),
    pytest.param({"regions": ["RegionOne"]}, id="regions-list"),
    pytest.param({}, id="no-region"),
]


@pytest.mark.parametrize("shape", SHAPES)
def test_an_instance_in_an_unnamed_region_is_never_absent(cloud, configure, shape):
    settings = Settings.from_env(configure(**shape))
    checker = build_checker(settings)
    elsewhere = cloud.add_server(project="gamma", region="RegionTwo")
    for uuid in (elsewhere.id, deleted(cloud)):
        verdict = checker.check(uuid)
        assert verdict.presence is Presence.UNKNOWN, verdict.sentence()
        assert "RegionTwo" in verdict.sentence()
        fix = "without a region" if not shape else "INSTANCEAPI_EXCLUDE_REGIONS=demo/RegionTwo"
        assert fix in verdict.sentence()
        assert "http" not in verdict.sentence()  # region names, never endpoint URLs
    here = cloud.add_server(project="gamma", region="RegionOne")
    assert checker.check(here.id).presence is Presence.PRESENT


def test_readyz_names_the_uncovered_region(cloud, configure):
    settings = Settings.from_env(configure(region_name="RegionOne"))
    checker = build_checker(settings)
    checker.regions[0].check_identity()  # what the refresher does
    client = testing.TestClient(create_app(settings, checker=checker))
    ready = client.simulate_get("/readyz")
    assert ready.status_code == 503
    assert "RegionTwo" in ready.json["targets"][0]["reason"]
    assert ready.json["excluded_regions"] == []


def test_an_excluded_region_is_echoed_and_absence_proven(cloud, configure):
    settings = Settings.from_env(configure("demo/RegionTwo", region_name="RegionOne"))
    checker = build_checker(settings)
    gone = deleted(cloud)
    verdict = checker.check(gone)
    assert verdict.presence is Presence.ABSENT, verdict.sentence()
    region = checker.regions[0]
    region.check_identity()
    region.visibility.current()
    client = testing.TestClient(create_app(settings, checker=checker))
    ready = client.simulate_get("/readyz")
    assert ready.json["excluded_regions"] == ["demo/RegionTwo"]
    assert "RegionTwo" not in ready.json["targets"][0]["reason"]


def test_both_regions_named_is_covered(cloud, configure):
    checker = build_checker(Settings.from_env(configure(regions=["RegionOne", "RegionTwo"])))
    assert [t.nova.name for t in checker.regions] == ["demo/RegionOne", "demo/RegionTwo"]
    assert checker.check(deleted(cloud, "RegionTwo")).presence is Presence.ABSENT


def test_one_region_catalog_without_a_configured_region_works_as_before(tmp_path, monkeypatch):
    with SimulatedCloud(regions=("RegionOne",)) as single:
        path = clouds_yaml(single, tmp_path / "clouds.yaml")
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
        checker = build_checker(Settings.from_env({"INSTANCEAPI_CLOUDS": "demo"}))
        assert checker.check(deleted(single)).presence is Presence.ABSENT


def test_doctor_fails_with_the_fix_then_passes_with_the_exclusion(configure):
    out = io.StringIO()
    assert doctor.run(configure(region_name="RegionOne"), out) == 1
    report = out.getvalue()
    assert "RegionTwo" in report
    assert "INSTANCEAPI_EXCLUDE_REGIONS=demo/RegionTwo" in report
    assert "regions excluded (INSTANCEAPI_EXCLUDE_REGIONS): none" in report
    assert "sees every project's servers by id" in report  # the other steps still ran
    out = io.StringIO()
    assert doctor.run(configure("demo/RegionTwo", region_name="RegionOne"), out) == 0
    assert "regions excluded (INSTANCEAPI_EXCLUDE_REGIONS): demo/RegionTwo" in out.getvalue()


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("RegionTwo", "is not 'cloud/Region'"),
        ("demo/", "is not 'cloud/Region'"),
        ("other/RegionTwo", "is not in INSTANCEAPI_CLOUDS"),
        ("demo/RegionTwo,demo/RegionTwo", "listed twice"),
    ],
)
def test_a_bad_exclusion_stops_startup_naming_the_key(value, said):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"INSTANCEAPI_CLOUDS": "demo", "INSTANCEAPI_EXCLUDE_REGIONS": value})
    assert caught.value.key == "INSTANCEAPI_EXCLUDE_REGIONS"
    assert said in str(caught.value)


def test_excluding_a_configured_region_stops_startup(configure):
    env = configure("demo/RegionTwo", regions=["RegionOne", "RegionTwo"])
    with pytest.raises(ConfigError) as caught:
        build_regions(Settings.from_env(env))
    assert caught.value.key == "INSTANCEAPI_EXCLUDE_REGIONS"
    with pytest.raises(ConfigError):
        Settings.from_env(
            {"INSTANCEAPI_CLOUDS": "demo/R1", "INSTANCEAPI_EXCLUDE_REGIONS": "demo/R1"}
        )


def test_coverage_rules():
    one, two = frozenset({"R1"}), frozenset({"R1", "R2"})
    unnamed = RegionCoverage("c", frozenset({None}))
    assert unnamed.uncovered(one) == []
    assert unnamed.uncovered(two) == ["R1", "R2"]  # keystoneauth picks one: no telling which
    named = RegionCoverage("c", frozenset({"R1"}), frozenset({"R2"}))
    assert named.uncovered(two) == []
    assert named.uncovered(frozenset({"R1", "R2", "R3"})) == ["R3"]


def test_a_region_added_to_the_catalog_is_caught_at_the_next_check(requests_mock):
    """Keystone is asked for the catalog as of now (our own token, validated) when due."""
    from keystoneauth1 import fixture

    from instanceapi.check.catalog import RegionWatch
    from instanceapi.check.checker import Checker
    from instanceapi.check.region import RegionChecker
    from tests.fakes import FakeCloud, new_uuid

    fake = FakeCloud(requests_mock)
    regions = ["RegionOne"]

    def validated(request, context):
        token = fixture.V3Token(project_id=fake.project_id)
        token.add_role(name="admin")
        service = token.add_service("compute")
        for region in regions:
            service.add_standard_endpoints(public=fake.compute_url, region=region)
        return dict(token)

    requests_mock.get(
        fake.auth_url + "/auth/tokens", json=validated, headers={"X-Subject-Token": "t"}
    )
    now = [0.0]
    nova = fake.nova()
    coverage = RegionCoverage("cloud", frozenset({"RegionOne"}))
    watch = RegionWatch(nova, coverage, interval=300.0, clock=lambda: now[0])
    checked = RegionChecker(nova, coverage=coverage)
    checked.catalog = watch
    checker = Checker([checked])
    watch.refresh()
    assert watch.problem is None
    gone = new_uuid()
    assert checker.check(gone).presence is Presence.ABSENT  # remembered as absent
    regions.append("RegionTwo")  # an operator adds a region; our token predates it
    now[0] += 299.0
    watch.refresh()
    assert watch.problem is None  # not due yet: no request
    assert fake.calls("GET", "/auth/tokens") == 1
    now[0] += 1.0
    watch.refresh()
    assert watch.problem is not None and "RegionTwo" in watch.problem
    assert watch.current() == watch.problem  # the request path keeps the fresh catalog's view
    verdict = checker.check(new_uuid())
    assert verdict.presence is Presence.UNKNOWN
    assert "RegionTwo" in verdict.sentence()
    again = checker.check(gone)  # the absence proven before RegionTwo is not served now
    assert (again.presence, again.source) == (Presence.UNKNOWN, "live")


def test_doctor_names_a_configured_region_missing_from_the_catalog(configure):
    out = io.StringIO()
    assert doctor.run(configure(regions=["RegionOne", "RegionTwo", "RegionThree"]), out) == 1
    assert "no compute endpoint in region RegionThree" in out.getvalue()


def test_no_absence_by_any_rule_while_a_region_is_unchecked(requests_mock):
    """Nova's own "DELETED" (rule reported-deleted) is no proof either."""
    from instanceapi.check.region import RegionChecker
    from tests.fakes import FakeCloud, new_uuid

    fake = FakeCloud(requests_mock)
    gone = new_uuid()
    fake.fail(rf".*/servers/{gone}$", json={"server": {"id": gone, "status": "DELETED"}})
    checked = RegionChecker(fake.nova(), coverage=RegionCoverage("cloud", frozenset({"RegionOne"})))
    assert checked.sight(gone).presence is Presence.ABSENT
    # The same catalog (RegionOne), seen by a configuration that checks another region only.
    elsewhere = RegionCoverage("cloud", frozenset({"RegionNine"}))
    unchecked = RegionChecker(fake.nova(), coverage=elsewhere)
    sighting = unchecked.sight(gone)
    assert sighting.presence is Presence.UNKNOWN
    assert "RegionOne" in sighting.detail
