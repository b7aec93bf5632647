"""Security review findings (issue 11), end to end: real Gunicorn, the simulated cloud on loopback.

Upstream costs are counted at the simulated cloud, for the UUIDs each test sends only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from instanceapi.config import Settings
from instanceapi.testing import SimulatedCloud, seed_demo
from instanceapi.testing.harness import ServiceProcess, service_env
from instanceapi.testing.hostile import nova_gets, uuids_with_v4_twins

TOKEN = "first-token-of-the-satellite-team"
NEW_TOKEN = "second-token-of-the-satellite-team"
DEFAULTS = Settings(regions=())


@pytest.fixture(scope="module")
def cloud() -> Iterator[SimulatedCloud]:
    with SimulatedCloud() as cloud:
        seed_demo(cloud)
        yield cloud


def check_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run Gunicorn's --check-config with our configuration module."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--check-config",
            "-c",
            "python:instanceapi.serve.gunicorn_conf",
        ],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- finding 1: amplification ----------------------------------------------------------------------


def test_a_hostile_bulk_costs_at_most_the_per_request_cap(cloud, tmp_path) -> None:
    env = service_env(cloud, tmp_path)
    with ServiceProcess(env, workers=1, ready_path="/readyz") as service:
        hostile = uuids_with_v4_twins(1000)
        answer = requests.post(f"{service.url}/check", json={"uuids": hostile}, timeout=120)
    codes = [r["code"] for r in answer.json()["results"]]
    assert codes.count(503) >= 1000 - DEFAULTS.bulk_max_live
    assert 404 not in codes[DEFAULTS.bulk_max_live :]
    # Was 2,000 (both forms of every UUID); now both forms of the capped number only.
    assert nova_gets(cloud, hostile) <= 2 * DEFAULTS.bulk_max_live


def test_a_flood_gets_503_instead_of_upstream_calls(cloud, tmp_path) -> None:
    env = service_env(
        cloud, tmp_path, INSTANCEAPI_UPSTREAM_BURST="10", INSTANCEAPI_UPSTREAM_RATE="0.1"
    )
    flood = uuids_with_v4_twins(64, twin_v4=False)  # one GET each
    with (
        ServiceProcess(env, workers=1, ready_path="/readyz") as service,
        ThreadPoolExecutor(16) as pool,
    ):
        answers = list(
            pool.map(lambda u: requests.get(f"{service.url}/check/{u}", timeout=60), flood)
        )
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {404, 503}
    assert statuses.count(503) >= 64 - 12
    assert all("Retry-After" in a.headers for a in answers if a.status_code == 503)
    # The bucket holds 10 and refills one per 10 s: a handful of GETs, not 64.
    assert nova_gets(cloud, flood) <= 12


def test_refused_credentials_are_tried_once_not_per_uuid(cloud, tmp_path) -> None:
    env = service_env(cloud, tmp_path)
    clouds = Path(env["OS_CLIENT_CONFIG_FILE"])
    clouds.write_text(clouds.read_text().replace(cloud.password("admin"), "a-rotated-password"))
    cloud.reset_counts()
    with ServiceProcess(env, workers=1, ready_path="/healthz") as service:
        hostile = uuids_with_v4_twins(300)
        bulk = requests.post(f"{service.url}/check", json={"uuids": hostile}, timeout=120)
        flood = [requests.get(f"{service.url}/check/{u}", timeout=30) for u in hostile[:40]]
    assert {r["code"] for r in bulk.json()["results"]} <= {500, 503}
    assert {a.status_code for a in flood} == {500}
    # Was one password authentication per lookup: 600 for this bulk alone.
    assert cloud.counts["keystone.token"] <= 2
    assert nova_gets(cloud, hostile) == 0


# -- finding 2: exposure warning -------------------------------------------------------------------


def test_an_open_non_loopback_bind_warns_at_start_up(cloud, tmp_path) -> None:
    env = service_env(cloud, tmp_path, INSTANCEAPI_BIND="0.0.0.0:8080")
    done = check_config(env)
    assert done.returncode == 0, done.stderr
    assert "warning: INSTANCEAPI_BIND=0.0.0.0:8080 is not loopback" in done.stderr
    quiet = check_config(service_env(cloud, tmp_path))
    assert "warning" not in quiet.stderr


# -- finding 6: files and directories --------------------------------------------------------------


def test_start_up_removes_only_its_own_metrics_files(cloud, tmp_path) -> None:
    metrics = tmp_path / "metrics"
    metrics.mkdir(mode=0o700)
    (metrics / "notes.txt").write_text("someone else's")
    (metrics / "keep").mkdir()
    (metrics / "keep" / "inner.txt").write_text("someone else's")
    (metrics / "counter_999999.db").write_bytes(b"\0" * 16)  # a dead worker's, from before
    env = service_env(cloud, tmp_path, PROMETHEUS_MULTIPROC_DIR=str(metrics))
    with ServiceProcess(env, workers=1):
        assert (metrics / "notes.txt").exists()
        assert (metrics / "keep" / "inner.txt").exists()
        assert not (metrics / "counter_999999.db").exists()
    assert metrics.is_dir()  # given, so not ours to remove


def test_a_temporary_runtime_directory_is_removed_on_exit(cloud, tmp_path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = service_env(cloud, tmp_path, TMPDIR=str(scratch))
    with ServiceProcess(env, workers=1):
        made = list(scratch.iterdir())
        assert [p.name[:12] for p in made] == ["instanceapi-"]
    assert list(scratch.iterdir()) == []
    check_config(env)
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("variable", ["INSTANCEAPI_RUNTIME_DIR", "PROMETHEUS_MULTIPROC_DIR"])
def test_a_shared_directory_open_to_others_stops_start_up(cloud, tmp_path, variable) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o755)  # noqa: S103 - the mistake under test
    env = service_env(cloud, tmp_path, **{variable: str(shared)})
    done = check_config(env)
    assert done.returncode == 2
    assert f"{variable}: {shared} is accessible to others" in done.stderr


# -- finding 7: reload -----------------------------------------------------------------------------


def workers(service: ServiceProcess) -> set[int]:
    return service.worker_pids()


def reloaded(service: ServiceProcess, before: set[int]) -> set[int]:
    """HUP the master; return the new worker set once every old worker is gone (≤ 30 s)."""
    service.reload()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = workers(service)
        if now and not now & before:
            return now
        time.sleep(0.1)
    raise AssertionError(f"the workers were not replaced:\n{service.log_text}")


def metrics_status(service: ServiceProcess, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    return requests.get(f"{service.url}/metrics", headers=headers, timeout=10).status_code


def test_a_bad_token_file_at_reload_keeps_the_service_serving(cloud, tmp_path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{TOKEN}\n")
    env = service_env(cloud, tmp_path, INSTANCEAPI_TOKEN_FILE=str(tokens))
    with ServiceProcess(env, workers=1) as service:
        assert metrics_status(service, TOKEN) == 200
        tokens.write_text("short\n")  # invalid: under 16 characters
        first = reloaded(service, workers(service))
        assert service.process is not None and service.process.poll() is None
        assert metrics_status(service, TOKEN) == 200  # the running settings were kept
        assert "keeping the running settings" in service.log_text
        assert "short" not in service.log_text
        tokens.write_text(f"{NEW_TOKEN}\n")  # fixed: the next reload takes it
        reloaded(service, first)
        assert metrics_status(service, NEW_TOKEN) == 200
        assert metrics_status(service, TOKEN) == 401


def test_a_bulk_answer_is_valid_json_for_any_item(cloud, tmp_path) -> None:
    env = service_env(cloud, tmp_path)
    body = b'{"uuids": ["\\ud800", NaN, 1e999999, "' + b"x" * 200_000 + b'"]}'
    with ServiceProcess(env, workers=1) as service:
        answer = requests.post(
            f"{service.url}/check",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
    assert answer.status_code == 200
    results = json.loads(answer.content.decode("utf-8"), parse_constant=_refuse)["results"]
    assert [r["code"] for r in results] == [400] * 4
    assert len(answer.content) < 4000


def _refuse(name: str) -> object:
    raise ValueError(f"{name} is not JSON")
