"""The Foreman API client against the simulated Satellite, over loopback HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest
import requests
import requests_mock

from instanceapi.reap.satellite import SatelliteClient, SatelliteError, build_session, parse_time
from instanceapi.testing.satellite import SimulatedSatellite, parse_search

UUID = "6f1c54a2-1b7e-4c55-9a53-3c0d2a1e9b{:02d}"


@pytest.fixture
def sim():
    with SimulatedSatellite() as sim:
        for n in range(1, 24):
            sim.add_guest(f"vm{n:02d}.example.com", UUID.format(n), organization="ACME")
        sim.add_host("metal.example.com", product="PowerEdge", organization="Other")
        yield sim


def client(sim: SimulatedSatellite, password: str | None = None, **kw) -> SatelliteClient:
    session = build_session(sim.user, password or sim.password)
    return SatelliteClient(sim.url, session, sleep=lambda _s: None, **{"per_page": 7, **kw})


def test_hosts_follow_pagination_and_scope(sim):
    hosts = client(sim).hosts()
    assert len(hosts) == 24
    assert sim.requests["GET /api/v2/hosts"] == 4, "24 hosts at most 7 a page"
    assert len(client(sim, per_page=5000).hosts()) == 24, "per_page is not capped"
    assert sim.requests["GET /api/v2/hosts"] == 5
    scoped = client(sim).hosts('organization = "ACME"')
    assert sorted(h.name for h in scoped) == [f"vm{n:02d}.example.com" for n in range(1, 24)]


def test_fact_values_are_keyed_by_host_name(sim):
    values = client(sim).fact_values("virt::uuid")
    assert len(values) == 23
    assert values["vm05.example.com"] == UUID.format(5)
    products = client(sim).fact_values("dmi::system::product_name")
    assert products["metal.example.com"] == "PowerEdge"


def test_a_transient_page_error_is_retried(sim):
    sim.fail_requests("/api/v2/fact_values", page=2, times=1)
    assert len(client(sim).fact_values("virt::uuid")) == 23


def test_a_persistent_page_error_aborts(sim):
    sim.fail_requests("/api/v2/hosts", page=3, times=10)
    with pytest.raises(SatelliteError, match="HTTP 500"):
        client(sim, retries=2).hosts()
    assert sim.requests["GET /api/v2/hosts"] == 2 + 3


def test_bad_credentials_fail_without_retrying(sim):
    with pytest.raises(SatelliteError, match=r"401.*Unable to authenticate"):
        client(sim, password="wrong").hosts()
    assert sim.requests["GET /api/v2/hosts"] == 1


def test_unreachable_satellite():
    session = build_session("admin", "x")
    sat = SatelliteClient("http://127.0.0.1:9", session, retries=1, sleep=lambda _s: None)
    with pytest.raises(SatelliteError, match="GET /api/v2/hosts"):
        sat.hosts()


def test_host_detail_and_delete(sim):
    host = sim.add_guest(
        "web.example.com",
        UUID.format(99),
        compute_resource_id=3,
        parameters={"instanceapi_protect": "true"},
        inherited_parameters={"instanceapi_protect": "false", "site": "x"},
        last_checkin=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    sat = client(sim)
    detail = sat.host_detail(host.id)
    assert detail.name == "web.example.com" and detail.compute_resource_id == 3
    assert detail.parameters == {"instanceapi_protect": "true", "site": "x"}
    assert detail.last_checkin == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    sat.delete_host(host.id)
    assert "web.example.com" not in sim.names()
    with pytest.raises(SatelliteError, match="404"):
        sat.delete_host(host.id)
    sim.fail_delete("vm01.example.com", status=500)
    with pytest.raises(SatelliteError, match="HTTP 500"):
        sat.delete_host(1)
    sim.fail_delete("vm02.example.com")  # Katello: 200, the record survives
    with pytest.raises(SatelliteError, match="answered 200, but the record is still there"):
        sat.delete_host(2)
    assert sim.deleted == ["web.example.com"]


def test_unexpected_bodies_are_errors():
    odd = {"results": "nope", "subtotal": 1, "per_page": 1}
    with requests_mock.Mocker() as mocker:
        mocker.get("https://sat.example.com/api/v2/hosts", json=odd)
        sat = SatelliteClient("https://sat.example.com", build_session("u", "p"))
        with pytest.raises(SatelliteError, match="unexpected hosts results"):
            sat.hosts()


def test_a_response_over_the_size_limit_is_not_read():
    """Issue 11 item 3: a tampered Satellite cannot make reap read without bound."""
    big = {"results": [{"id": 1, "name": "x" * 5000}], "subtotal": 1, "per_page": 1}
    with requests_mock.Mocker() as mocker:
        mocker.get("https://sat.example.com/api/v2/hosts", json=big)
        session = build_session("u", "p")
        sat = SatelliteClient("https://sat.example.com", session, max_bytes=4096, retries=0)
        with pytest.raises(SatelliteError, match="over 4096 bytes"):
            sat.hosts()
        assert len(SatelliteClient("https://sat.example.com", session).hosts()) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-01-02 03:04:05 UTC", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2025-01-02T03:04:05Z", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("yesterday", None),
        (None, None),
        ("", None),
    ],
)
def test_parse_time(text, expected):
    assert parse_time(text) == expected


def test_simulator_search_subset():
    assert parse_search('(name ~ web) and organization = "Default Organization"') == [
        ("name", "~", "web"),
        ("organization", "=", "Default Organization"),
    ]
    with SimulatedSatellite() as sim:
        sim.add_host("a.example.com")
        resp = requests.get(
            f"{sim.url}/api/v2/hosts",
            params={"search": "name = a or name = b"},
            auth=(sim.user, sim.password),
            timeout=5,
        )
        assert resp.status_code == 400
        resp = requests.get(
            f"{sim.url}/api/v2/hosts",
            params={"search": "colour = red"},
            auth=(sim.user, sim.password),
            timeout=5,
        )
        assert resp.status_code == 400 and "not recognized" in resp.json()["error"]["message"]


def test_simulator_command_line(tmp_path):
    cloud = tmp_path / "cloud.json"
    cloud.write_text(
        "starting\n"
        + json.dumps({"existing": [UUID.format(1)], "deleted": [UUID.format(2)]})
        + "\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "instanceapi.testing.satellite", "--hosts-from-json", str(cloud)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        info = json.loads(proc.stdout.readline())
        assert info["hosts"] == 5 and info["user"] == "admin"
        sat = SatelliteClient(info["url"], build_session(info["user"], info["password"]))
        assert set(sat.fact_values("virt::uuid")) >= {
            "vm-001.demo.example.com",
            "vm-002.demo.example.com",
        }
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_the_configured_ca_bundle_wins_over_requests_ca_bundle(monkeypatch, tmp_path):
    import requests_mock

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "elsewhere.pem"))
    session = build_session("admin", "secret", ca_bundle="/etc/pki/katello/ca.crt")
    satellite = SatelliteClient("https://sat.example.com", session, sleep=lambda _s: None)
    host = "https://sat.example.com/api/v2/hosts/7"
    with requests_mock.Mocker() as mocked:
        # The re-read, then (after the DELETE) the 404 that proves the deletion.
        mocked.get(host, [{"json": {"id": 7, "name": "h"}}, {"status_code": 404, "json": {}}])
        mocked.get("https://sat.example.com/api/v2/fact_values", json={"results": {}})
        mocked.delete(host, status_code=200)
        satellite.host_detail(7)
        satellite.delete_host(7)
    assert [r.verify for r in mocked.request_history] == ["/etc/pki/katello/ca.crt"] * 4
