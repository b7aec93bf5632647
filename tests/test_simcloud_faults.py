"""Fault injection, token expiry/revocation and request counting of the simulated cloud."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
import requests
from keystoneauth1 import exceptions as ksa_exc
from keystoneauth1 import session
from novaclient import exceptions as nova_exc

from instanceapi.testing import SimulatedCloud
from instanceapi.testing.clients import nova, password_session


@pytest.fixture
def cloud() -> Iterator[SimulatedCloud]:
    with SimulatedCloud() as running:
        yield running


def _port_refuses(url: str) -> bool:
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_nova_down_refuses_connections_then_comes_back_on_same_port(cloud: SimulatedCloud) -> None:
    server = cloud.add_server(project="alpha")
    client = nova(password_session(cloud, "member"))
    assert client.servers.get(server.id).id == server.id  # keep-alive connection now pooled
    url = cloud.nova_url()
    cloud.fault("nova", down=True)
    assert _port_refuses(url)
    with pytest.raises(ksa_exc.ConnectFailure):
        client.servers.get(server.id)
    cloud.clear_faults()
    assert cloud.nova_url() == url
    assert client.servers.get(server.id).id == server.id


def test_keystone_down_refuses_authentication(cloud: SimulatedCloud) -> None:
    cloud.fault("keystone", down=True)
    with pytest.raises(ksa_exc.ConnectFailure):
        password_session(cloud, "member").get_token()
    assert _port_refuses(cloud.auth_url)
    # the dedicated control listener survives
    resp = session.Session().post(cloud.control_url + "/_sim/clear")
    assert resp.json() == {"ok": True}
    assert password_session(cloud, "member").get_token()


@pytest.mark.parametrize("status", [500, 503])
def test_status_fault_answers_json_error(cloud: SimulatedCloud, status: int) -> None:
    server = cloud.add_server(project="alpha")
    sess = password_session(cloud, "member")
    sess.get_token()
    cloud.fault("nova", status=status)
    resp = sess.get(cloud.nova_url() + f"/servers/{server.id}", raise_exc=False)
    assert resp.status_code == status
    body = resp.json()
    assert next(iter(body.values()))["code"] == status
    assert (resp.headers.get("Retry-After") == "1") is (status == 503)
    with pytest.raises(nova_exc.ClientException) as info:
        nova(sess).servers.get(server.id)
    assert info.value.code == status


def test_keystone_status_fault(cloud: SimulatedCloud) -> None:
    cloud.fault("keystone", status=500)
    with pytest.raises(ksa_exc.InternalServerError):
        password_session(cloud, "member").get_token()
    assert cloud.counts["keystone.token"] == 1
    assert cloud.requests[-1] == ("keystone", "POST", "/v3/auth/tokens", 500)


def test_delay_exceeds_client_timeout(cloud: SimulatedCloud) -> None:
    server = cloud.add_server(project="alpha")
    sess = password_session(cloud, "member", timeout=0.3)
    sess.get_token()
    cloud.fault("nova", delay=1.0)
    started = time.monotonic()
    with pytest.raises(ksa_exc.ConnectTimeout):
        nova(sess).servers.get(server.id)
    assert time.monotonic() - started < 0.9
    cloud.clear_faults()
    assert nova(sess).servers.get(server.id).id == server.id


def test_garbage_is_200_without_json(cloud: SimulatedCloud) -> None:
    sess = password_session(cloud, "member")
    sess.get_token()
    cloud.fault("nova", garbage=True)
    resp = sess.get(cloud.nova_url() + "/servers")
    assert resp.status_code == 200
    with pytest.raises(ValueError):
        resp.json()


def test_fail_page_breaks_only_that_page() -> None:
    with SimulatedCloud(max_limit=10) as cloud:
        cloud.populate(35)
        admin = nova(password_session(cloud))
        cloud.fault("nova", fail_page=3)
        with pytest.raises(nova_exc.ClientException) as info:
            admin.servers.list(search_opts={"all_tenants": 1}, limit=-1)
        assert info.value.code == 500
        assert [r.status for r in cloud.requests if r.service == "nova"][-3:] == [200, 200, 500]
        cloud.fault("nova", fail_page=1)
        with pytest.raises(nova_exc.ClientException):
            admin.servers.list(search_opts={"all_tenants": 1})
        cloud.clear_faults()
        assert len(admin.servers.list(search_opts={"all_tenants": 1}, limit=-1)) == 35


def test_hide_cell_fault(cloud: SimulatedCloud) -> None:
    server = cloud.add_server(project="alpha", cell="cell2")
    cloud.fault("nova", hide_cell="cell2")
    assert nova(password_session(cloud, "member")).servers.get(server.id).status == "UNKNOWN"
    cloud.clear_faults()
    assert nova(password_session(cloud, "member")).servers.get(server.id).status == "ACTIVE"


@pytest.mark.parametrize("how", ["expire", "revoke"])
def test_dead_token_is_401_and_session_reauthenticates(cloud: SimulatedCloud, how: str) -> None:
    server = cloud.add_server(project="alpha")
    sess = password_session(cloud, "member")
    client = nova(sess)
    assert client.servers.get(server.id).id == server.id
    old_token = sess.get_token()
    getattr(cloud, f"{how}_tokens")()
    raw = session.Session().get(
        cloud.nova_url() + f"/servers/{server.id}",
        headers={"X-Auth-Token": old_token},
        raise_exc=False,
    )
    assert raw.status_code == 401
    assert ("revoked" in raw.text) is (how == "revoke")
    assert client.servers.get(server.id).id == server.id  # 401 -> new token -> retry
    assert cloud.counts["keystone.token"] == 2
    assert sess.get_token() != old_token


def test_short_token_ttl_is_renewed_before_expiry() -> None:
    with SimulatedCloud(token_ttl=60.0) as cloud:
        server = cloud.add_server(project="alpha")
        client = nova(password_session(cloud, "member"))
        for _ in range(3):
            client.servers.get(server.id)
        # keystoneauth renews a token expiring within 120 s at every use (several per request).
        assert cloud.counts["keystone.token"] >= 3
        assert cloud.counts["nova.show"] == 3


def test_counters_requests_and_reset(cloud: SimulatedCloud) -> None:
    server = cloud.add_server(project="alpha")
    client = nova(password_session(cloud, "member"))
    client.servers.get(server.id)
    client.servers.list()
    counts = cloud.counts
    assert counts["keystone.token"] == 1
    assert counts["nova.show"] == 1 and counts["nova.list"] == 1 and counts["nova.total"] == 2
    assert counts["nova.show@RegionOne"] == 1
    assert cloud.requests == [
        ("keystone", "POST", "/v3/auth/tokens", 201),
        ("nova", "GET", f"/v2.1/servers/{server.id}", 200),
        ("nova", "GET", "/v2.1/servers/detail", 200),
    ]
    cloud.reset_counts()
    assert cloud.counts == {} and cloud.requests == []


def test_latency_is_per_request_plus_per_server() -> None:
    with SimulatedCloud(nova_latency=0.05, per_server_latency=0.002) as cloud:
        cloud.populate(100, projects=("alpha",))
        client = nova(password_session(cloud, "member"))
        started = time.monotonic()
        assert len(client.servers.list()) == 100
        assert time.monotonic() - started >= 0.05 + 100 * 0.002


def test_control_on_keystone_listener_can_take_keystone_down(cloud: SimulatedCloud) -> None:
    base = cloud.auth_url.removesuffix("/v3")
    fault = {"service": "keystone", "down": True}
    assert requests.post(base + "/_sim/fault", json=fault, timeout=5).json() == {"ok": True}
    assert _port_refuses(cloud.auth_url)
    assert requests.post(cloud.control_url + "/_sim/clear", timeout=5).status_code == 200
    assert password_session(cloud, "member").get_token()


def test_fault_set_before_start_applies() -> None:
    cloud = SimulatedCloud()
    cloud.fault("nova", down=True)
    with cloud:
        assert _port_refuses(cloud.nova_url())
        cloud.clear_faults()
        assert not _port_refuses(cloud.nova_url())


def test_replay_pages_fault_ignores_the_marker() -> None:
    """A proxy replaying page 1: the next link's marker is dropped, page 1 comes again."""
    with SimulatedCloud(max_limit=3) as cloud:
        cloud.populate(7)
        sess = password_session(cloud)
        url = cloud.nova_url() + "/servers/detail?all_tenants=1&limit=3"
        first = sess.get(url).json()
        follow = first["servers_links"][0]["href"]
        assert sess.get(follow).json()["servers"] != first["servers"]
        cloud.fault("nova", replay_pages=True)
        again = sess.get(follow).json()
        assert [s["id"] for s in again["servers"]] == [s["id"] for s in first["servers"]]
        assert again["servers_links"][0]["href"] == follow  # never advances


def test_bad_item_fault_puts_a_non_object_in_every_page(cloud: SimulatedCloud) -> None:
    cloud.populate(2)
    sess = password_session(cloud)
    cloud.fault("nova", bad_item=True)
    servers = sess.get(cloud.nova_url() + "/servers/detail?all_tenants=1").json()["servers"]
    assert len(servers) == 3 and isinstance(servers[0], str)
    server = cloud.add_server(project="admin")
    assert sess.get(f"{cloud.nova_url()}/servers/{server.id}").json()["server"]["id"] == server.id
