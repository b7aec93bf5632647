"""Operations end to end: metrics across workers, readiness, doctor, the systemd unit."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from instanceapi import doctor
from instanceapi.testing import SimulatedCloud, seed_demo
from instanceapi.testing.harness import ServiceProcess, service_env
from tests.fakes import TOKEN, new_uuid, require_tool

UNIT = Path(__file__).parent.parent / "deploy" / "systemd" / "instanceapi.service"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def cloud():
    with SimulatedCloud() as cloud:
        seed_demo(cloud)
        yield cloud


def env_for(cloud, tmp_path, **extra):
    return service_env(cloud, tmp_path, **extra)


def wait_for(url, status, timeout=30.0, **kwargs):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = requests.get(url, timeout=10, **kwargs)
        if answer.status_code == status:
            return answer
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered {status}")


def metric_total(text: str, name: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.M))


def checks_per_worker(metrics_dir: Path) -> dict[str, float]:
    """Read each worker's own counter file: checks it counted, by file (= by pid).

    NOTE: prometheus_client creates the file, then truncates it to its initial
    size; a file read in between is empty (and not yet any worker's count).
    """
    from prometheus_client.mmap_dict import MmapedDict

    return {
        path.name: sum(
            value
            for key, value, *_ in MmapedDict.read_all_values_from_file(str(path))
            if "instanceapi_checks_total" in key
        )
        for path in metrics_dir.glob("counter_*.db")
        if path.stat().st_size >= 8
    }


def test_metrics_count_checks_from_both_workers(cloud, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# the Satellite team\n{TOKEN}\n")
    metrics_dir = tmp_path / "metrics"
    env = env_for(
        cloud,
        tmp_path,
        INSTANCEAPI_TOKEN_FILE=str(tokens),
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    server = cloud.add_server(project="beta")
    sent = 0
    with ServiceProcess(env, workers=2, ready_path="/healthz") as service:
        assert requests.get(f"{service.url}/check/{new_uuid()}", timeout=10).status_code == 401
        # A new connection per check; keep going (bounded) until both workers took some.
        while sent < 400 and not (
            len(checks_per_worker(metrics_dir)) == 2
            and all(checks_per_worker(metrics_dir).values())
        ):
            for _ in range(20):
                answer = requests.get(f"{service.url}/check/{server.id}", headers=AUTH, timeout=10)
                assert answer.status_code == 200
                sent += 1
        text = requests.get(f"{service.url}/metrics", headers=AUTH, timeout=10).text
    per_worker = checks_per_worker(metrics_dir)
    assert len(per_worker) == 2 and all(per_worker.values()), per_worker
    assert metric_total(text, "instanceapi_checks_total") == sent == sum(per_worker.values())
    assert metric_total(text, "instanceapi_token_renewals_total") >= 2  # one per worker


def test_readiness_follows_keystone(cloud, tmp_path):
    env = env_for(
        cloud,
        tmp_path,
        INSTANCEAPI_REFRESH_INTERVAL="1",
        INSTANCEAPI_VISIBILITY_INTERVAL="5",
        INSTANCEAPI_ALLOW_CIDRS="127.0.0.1/32",  # readiness detail is for allowed clients
    )
    with ServiceProcess(env, ready_path="/readyz") as service:
        cloud.fault("keystone", down=True)
        try:
            down = wait_for(f"{service.url}/readyz", 503)
            assert "Keystone" in down.json()["targets"][0]["reason"]
        finally:
            cloud.clear_faults()
        wait_for(f"{service.url}/readyz", 200)


def doctor_env(cloud, tmp_path, monkeypatch):
    """Settings for doctor; OpenStack credentials come from the process environment."""
    env = env_for(cloud, tmp_path)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", env["OS_CLIENT_CONFIG_FILE"])
    return env


def test_doctor_clean_report(cloud, tmp_path, monkeypatch):
    out = io.StringIO()
    status = doctor.run(doctor_env(cloud, tmp_path, monkeypatch), out)
    assert status == 0, out.getvalue()
    assert "sees every project's servers by id" in out.getvalue()
    assert "no problems found" in out.getvalue()


def test_doctor_wrong_password(cloud, tmp_path, monkeypatch):
    env = doctor_env(cloud, tmp_path, monkeypatch)
    path = Path(env["OS_CLIENT_CONFIG_FILE"])
    path.write_text(path.read_text().replace(cloud.password("admin"), "wrong-password"))
    out = io.StringIO()
    assert doctor.run(env, out) == 1
    assert "HTTP 401" in out.getvalue()
    assert "check the password or application credential" in out.getvalue()
    assert "wrong-password" not in out.getvalue()


def test_doctor_names_an_invalid_setting(tmp_path):
    out = io.StringIO()
    assert doctor.run({"INSTANCEAPI_CLOUDS": "demo", "INSTANCEAPI_RETRIES": "many"}, out) == 2
    assert "INSTANCEAPI_RETRIES" in out.getvalue()


def installed_unit(tmp_path: Path) -> Path:
    """The unit as shipped, but starting this checkout's installed console script."""
    script = Path(sys.executable).with_name("instanceapi")
    text = UNIT.read_text().replace("/opt/instanceapi/bin/instanceapi", str(script))
    path = tmp_path / UNIT.name
    path.write_text(text)
    return path


def test_systemd_unit_verifies(tmp_path):
    analyze = require_tool("systemd-analyze")
    done = subprocess.run(
        [analyze, "verify", str(installed_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_systemd_unit_security_score(tmp_path):
    analyze = require_tool("systemd-analyze")
    done = subprocess.run(
        [analyze, "security", "--offline=yes", "--threshold=20", str(installed_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert score, done.stdout + done.stderr
    assert float(score.group(1)) <= 2.0
    assert done.returncode == 0


#: The least-privilege recipe of the README: read-only GETs on the compute paths used.
ACCESS_RULES = [
    {"service": "compute", "method": "GET", "path": "/v2.1"},
    {"service": "compute", "method": "GET", "path": "/v2.1/"},
    {"service": "compute", "method": "GET", "path": "/v2.1/servers/*"},
]


@pytest.mark.parametrize(
    ("roles", "rules", "status", "said"),
    [
        (["admin"], ACCESS_RULES, 0, "no problems found"),
        (
            ["admin"],
            [{"service": "compute", "method": "GET", "path": "/v2.1/servers"}],
            1,
            "HTTP 401",
        ),
        (["reader"], ACCESS_RULES, 1, "cannot list all projects"),
    ],
)
def test_doctor_judges_application_credentials(
    cloud, tmp_path, monkeypatch, roles, rules, status, said
):
    secret = "app-credential-secret-0123456789"
    credential = cloud.add_application_credential("admin", secret, roles=roles, access_rules=rules)
    path = cloud.write_clouds_yaml(
        tmp_path / "clouds.yaml", cloud_name="demo", application_credential=(credential, secret)
    )
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    out = io.StringIO()
    assert doctor.run({"INSTANCEAPI_CLOUDS": "demo"}, out) == status, out.getvalue()
    assert said in out.getvalue()
    assert secret not in out.getvalue()


def test_runtime_dir_and_access_log_from_the_config_file(cloud, tmp_path):
    """INSTANCEAPI_CONFIG_FILE's RUNTIME_DIR and ACCESS_LOG are honoured by the Gunicorn config."""
    runtime, access = tmp_path / "run", tmp_path / "access.log"
    runtime.mkdir()
    runtime.chmod(0o700)  # the workers trust what they find there: private or refused
    settings = tmp_path / "instanceapi.env"
    settings.write_text(f"INSTANCEAPI_RUNTIME_DIR={runtime}\nINSTANCEAPI_ACCESS_LOG={access}\n")
    env = env_for(cloud, tmp_path, INSTANCEAPI_CONFIG_FILE=str(settings))
    with ServiceProcess(env, ready_path="/healthz") as service:
        requests.get(f"{service.url}/check/{new_uuid()}", timeout=10)
        assert (runtime / "metrics").is_dir()
    assert "GET /check/" in access.read_text()
    assert runtime.is_dir()  # configured: ours to use, not to remove


def test_the_temporary_runtime_dir_is_removed_on_exit(cloud, tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = env_for(cloud, tmp_path, TMPDIR=str(scratch))
    with ServiceProcess(env, ready_path="/healthz"):
        made = list(scratch.glob("instanceapi-*"))
        assert len(made) == 1 and (made[0] / "metrics").is_dir()
    assert not made[0].exists()
