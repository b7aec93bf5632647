"""Simulated cloud operations: control API, clouds.yaml, CLI, scale, concurrency, shutdown."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openstack.config
import pytest
import requests
from novaclient import exceptions as nova_exc

from instanceapi.testing import SimulatedCloud, seed_demo
from instanceapi.testing.clients import nova, password_session

# openstacksdk's own deprecation notice about an optional metrics backend
pytestmark = pytest.mark.filterwarnings("ignore:Support for InfluxDB")


@pytest.fixture
def cloud() -> Iterator[SimulatedCloud]:
    with SimulatedCloud() as running:
        yield running


def test_control_api_drives_and_reads_the_cloud(cloud: SimulatedCloud) -> None:
    base = cloud.auth_url.removesuffix("/v3")  # mounted on the Keystone listener too
    created = requests.post(
        base + "/_sim/servers", json={"project": "beta", "status": "SHUTOFF"}, timeout=5
    )
    assert created.status_code == 201
    server = created.json()
    assert server["status"] == "SHUTOFF" and server["project_id"] == cloud.project_id("beta")
    admin = nova(password_session(cloud))
    assert admin.servers.get(server["id"]).status == "SHUTOFF"
    counts = requests.get(base + "/_sim/counts", timeout=5).json()
    assert counts["nova.show"] == 1 and counts["keystone.token"] == 1
    fault = {"service": "nova", "status": 500}
    assert requests.post(base + "/_sim/fault", json=fault, timeout=5).json() == {"ok": True}
    with pytest.raises(nova_exc.ClientException):
        admin.servers.get(server["id"])
    state = requests.get(cloud.control_url + "/_sim/state", timeout=5).json()
    assert state["faults"]["nova@RegionOne"]["status"] == 500
    assert state["regions"]["RegionOne"]["by_status"] == {"SHUTOFF": 1}
    requests.post(base + "/_sim/clear", timeout=5)
    assert requests.delete(base + f"/_sim/servers/{server['id']}", timeout=5).status_code == 204
    with pytest.raises(nova_exc.NotFound):
        admin.servers.get(server["id"])
    requests.post(base + "/_sim/reset", timeout=5)
    assert requests.get(base + "/_sim/counts", timeout=5).json() == {}
    assert cloud.counts == {}
    missing = requests.post(
        base + "/_sim/servers/nope/status", json={"status": "ACTIVE"}, timeout=5
    )
    assert missing.status_code == 404
    bad = requests.post(base + "/_sim/fault", json={"service": "glance"}, timeout=5)
    assert bad.status_code == 400


def test_control_api_soft_delete_populate_and_tokens(cloud: SimulatedCloud) -> None:
    ctl = cloud.control_url
    ids = requests.post(ctl + "/_sim/populate", json={"n": 5}, timeout=5).json()["ids"]
    assert len(ids) == 5
    requests.delete(ctl + f"/_sim/servers/{ids[0]}?soft=1", timeout=5)
    assert cloud.server(ids[0]).status == "SOFT_DELETED"
    requests.post(ctl + f"/_sim/servers/{ids[1]}/status", json={"status": "ERROR"}, timeout=5)
    assert cloud.server(ids[1]).status == "ERROR"
    client = nova(password_session(cloud))
    client.servers.list()
    requests.post(ctl + "/_sim/expire_tokens", timeout=5)
    client.servers.list()
    assert cloud.counts["keystone.token"] == 2


def _config(path: Path, cloud_name: str = "demo"):
    return openstack.config.OpenStackConfig(config_files=[str(path)]).get_one(cloud=cloud_name)


def test_clouds_yaml_password_and_application_credential(
    cloud: SimulatedCloud, tmp_path: Path
) -> None:
    server = cloud.add_server(project="admin")
    path = tmp_path / "clouds.yaml"
    cloud.write_clouds_yaml(path)
    cred = cloud.add_application_credential("admin", "app-secret", roles=["admin"])
    cloud.write_clouds_yaml(path, cloud_name="appcred", application_credential=(cred, "app-secret"))
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    for name in ("demo", "appcred"):
        config = _config(path, name)
        assert config.get_region_name("compute") == "RegionOne"
        sess = config.get_session()
        assert nova(sess, region="RegionOne").servers.get(server.id).id == server.id
    assert cloud.counts["keystone.token"] == 2


def test_clouds_yaml_with_several_regions(tmp_path: Path) -> None:
    with SimulatedCloud(regions=("RegionOne", "RegionTwo")) as cloud:
        two = cloud.add_server(project="alpha", region="RegionTwo")
        path = cloud.write_clouds_yaml(tmp_path / "clouds.yaml", user="member")
        loader = openstack.config.OpenStackConfig(config_files=[str(path)])
        assert [c.region_name for c in loader.get_all() if c.name == "demo"] == [
            "RegionOne",
            "RegionTwo",
        ]
        assert loader.get_one(cloud="demo").region_name == "RegionOne"
        config = loader.get_one(cloud="demo", region_name="RegionTwo")
        assert nova(config.get_session(), region="RegionTwo").servers.get(two.id).id == two.id


def test_seed_demo_mix(cloud: SimulatedCloud) -> None:
    data = seed_demo(cloud)
    admin = nova(password_session(cloud))
    statuses = {admin.servers.get(i).status for i in data["existing"]}
    assert {"ACTIVE", "SHUTOFF", "ERROR", "PAUSED", "SUSPENDED"} <= statuses
    assert {"SHELVED_OFFLOADED", "BUILD", "SOFT_DELETED"} <= statuses
    assert set(data["soft_deleted"]) <= set(data["existing"])
    for gone in data["deleted"]:
        with pytest.raises(nova_exc.NotFound):
            admin.servers.get(gone)


def test_cli_prints_json_line_and_exits_on_sigterm(tmp_path: Path) -> None:
    path = tmp_path / "clouds.yaml"
    command = [sys.executable, "-m", "instanceapi.testing", "--servers", "20"]
    command += ["--clouds-yaml", str(path), "--regions", "RegionOne,RegionTwo"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["clouds_yaml"] == str(path.resolve())
        assert info["auth_url"].startswith("http://127.0.0.1:")
        assert len(info["existing"]) >= 20 + 10 and len(info["deleted"]) == 3
        config = _config(path, "demo-reader-all")
        client = nova(config.get_session(), region="RegionOne")
        assert len(client.servers.list(search_opts={"all_tenants": 1}, limit=-1)) >= 30
        counts = requests.get(info["control"] + "/_sim/counts", timeout=5).json()
        assert counts["nova.list"] >= 1
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "secret" not in out and "Traceback" not in err


def _free_port_block(size: int) -> int:
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        try:
            for port in range(base, base + size):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free block of ports")


def _start_cli_on_port_base(tmp_path: Path) -> tuple[int, subprocess.Popen[str], dict]:
    for _ in range(5):  # another process may grab a port between probe and bind
        base = _free_port_block(3)
        command = [sys.executable, "-m", "instanceapi.testing", "--servers", "0"]
        command += ["--port-base", str(base), "--clouds-yaml", str(tmp_path / "c.yaml")]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line:
            return base, proc, json.loads(line)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 1 and "cannot listen" in err
    raise AssertionError("could not start the CLI on a free port block")


def test_cli_port_base(tmp_path: Path) -> None:
    base, proc, info = _start_cli_on_port_base(tmp_path)
    try:
        assert info["auth_url"] == f"http://127.0.0.1:{base}/v3"
        assert info["nova_urls"]["RegionOne"] == f"http://127.0.0.1:{base + 1}/v2.1"
        assert info["control"] == f"http://127.0.0.1:{base + 2}"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    assert proc.returncode == 0


def test_cli_port_in_use_exits_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "instanceapi.testing", "--port-base", str(port)]
        command += ["--clouds-yaml", str(tmp_path / "c.yaml")]
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1
    assert "cannot listen" in done.stderr and done.stdout == ""


def test_populate_100k(cloud: SimulatedCloud) -> None:
    ids = cloud.populate(100_000)
    assert len(ids) == len(set(ids)) == 100_000
    servers = cloud.servers()
    assert len(servers) == 100_000
    assert {s.project_id for s in servers} == {
        cloud.project_id(p) for p in ("alpha", "beta", "gamma")
    }
    again = SimulatedCloud().populate(10, seed=7), SimulatedCloud().populate(10, seed=7)
    assert again[0] == again[1]
    # A page deep in the listing is found without scanning from the top.
    resp = password_session(cloud).get(
        cloud.nova_url() + f"/servers?all_tenants=1&limit=3&marker={ids[50_000]}"
    )
    assert [s["id"] for s in resp.json()["servers"]] == ids[49_997:50_000][::-1]


def test_many_concurrent_keepalive_clients(cloud: SimulatedCloud) -> None:
    server = cloud.add_server(project="alpha")
    token = password_session(cloud, "member").get_token()
    url = cloud.nova_url() + f"/servers/{server.id}"
    barrier = threading.Barrier(200)

    def worker(_: int) -> list[int]:
        with requests.Session() as http:
            barrier.wait(timeout=10)
            return [
                http.get(url, headers={"X-Auth-Token": token}, timeout=10).status_code
                for _ in range(5)
            ]

    with ThreadPoolExecutor(max_workers=200) as pool:
        results = [code for codes in pool.map(worker, range(200)) for code in codes]
    assert results == [200] * 1000
    assert cloud.counts["nova.show"] == 1000


def test_stop_releases_ports_and_threads() -> None:
    before = {t.name for t in threading.enumerate()}
    cloud = SimulatedCloud(regions=("RegionOne", "RegionTwo")).start()
    auth_url = cloud.auth_url
    password_session(cloud).get_token()
    cloud.stop()
    leftover = {t.name for t in threading.enumerate()} - before
    assert not {name for name in leftover if name.startswith("simcloud-")}
    with pytest.raises(requests.ConnectionError):
        requests.get(auth_url, timeout=2)
    with pytest.raises(RuntimeError):
        _ = cloud.auth_url
