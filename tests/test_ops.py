"""Operations: request ids, logs, metrics, access control, overload, secrets (in-process)."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
import requests
from falcon import testing

from instanceapi import logs
from instanceapi.check.checker import Checker, RegionChecker
from instanceapi.config import RegionSpec, Settings
from instanceapi.http.app import create_app, upstream_observer
from instanceapi.metrics import Metrics
from tests.fakes import PASSWORD, TOKEN, FakeCloud, new_uuid


def app_for(cloud: FakeCloud, *, settings: Settings | None = None, **checker_kwargs):
    metrics = Metrics()
    nova = cloud.nova()
    nova._observe = upstream_observer(metrics)  # what build_checker wires in production
    checker = Checker([RegionChecker(nova)], **checker_kwargs)
    settings = settings or Settings(regions=(RegionSpec("cloud"),))
    return testing.TestClient(create_app(settings, checker=checker, metrics=metrics)), metrics


@pytest.fixture
def cloud(requests_mock):
    return FakeCloud(requests_mock)


def test_request_id_is_taken_echoed_and_logged(cloud, caplog):
    caplog.handler.addFilter(logs.RequestIdFilter())
    caplog.set_level(logging.INFO)
    client, _ = app_for(cloud)
    uuid = cloud.add()
    answer = client.simulate_get(f"/check/{uuid}", headers={"X-Request-ID": "sat-run-42.7"})
    assert answer.headers["X-Request-ID"] == "sat-run-42.7"
    check_lines = [r for r in caplog.records if r.getMessage().startswith("check uuid=")]
    assert [r.request_id for r in check_lines] == ["sat-run-42.7"]
    assert "answer=200 source=live" in check_lines[0].getMessage()
    assert "upstream=" in check_lines[0].getMessage()


def test_unsafe_or_missing_request_id_is_replaced(cloud):
    client, _ = app_for(cloud)
    hostile = client.simulate_get("/healthz", headers={"X-Request-ID": "a\nforged log line"})
    generated = client.simulate_get("/healthz")
    for answer in (hostile, generated):
        assert len(answer.headers["X-Request-ID"]) == 32
        assert answer.headers["X-Request-ID"].isalnum()


def test_json_log_format(cloud, capsys):
    logs.configure("INFO", "json")
    try:
        client, _ = app_for(cloud)
        client.simulate_get(f"/check/{cloud.add()}", headers={"X-Request-ID": "abc"})
    finally:
        logs.configure("WARNING", "plain")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    check = next(line for line in lines if line["message"].startswith("check uuid="))
    assert check["request_id"] == "abc"
    assert {"time", "level", "logger"} <= check.keys()


def test_bearer_token_is_required_but_health_stays_open(cloud):
    settings = Settings(regions=(RegionSpec("cloud"),), api_tokens=(TOKEN,))
    client, _ = app_for(cloud, settings=settings)
    uuid = cloud.add()
    assert client.simulate_get("/healthz").status_code == 200
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
    ):
        answer = client.simulate_get(f"/check/{uuid}", headers=headers)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert "Instance-Exists" not in answer.headers
    assert client.simulate_post("/check", json={"uuids": [uuid]}).status_code == 401
    assert client.simulate_get("/metrics").status_code == 401
    ok = client.simulate_get(f"/check/{uuid}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200


def test_address_allowlist(cloud):
    import ipaddress

    settings = Settings(
        regions=(RegionSpec("cloud"),), allow_networks=(ipaddress.ip_network("10.1.0.0/16"),)
    )
    client, _ = app_for(cloud, settings=settings)
    uuid = cloud.add()
    assert client.simulate_get(f"/check/{uuid}", remote_addr="10.1.2.3").status_code == 200
    refused = client.simulate_get(f"/check/{uuid}", remote_addr="192.0.2.7")
    assert refused.status_code == 403
    assert client.simulate_get("/healthz", remote_addr="192.0.2.7").status_code == 200


def test_allowlist_reads_x_forwarded_for_only_from_a_trusted_proxy(cloud):
    import ipaddress

    settings = Settings(
        regions=(RegionSpec("cloud"),),
        allow_networks=(ipaddress.ip_network("10.1.0.0/16"),),
        forwarded_allow=(ipaddress.ip_network("127.0.0.1"),),
    )
    client, _ = app_for(cloud, settings=settings)
    uuid = cloud.add()

    def status(peer: str, forwarded: str | None) -> int:
        headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
        answer = client.simulate_get(f"/check/{uuid}", remote_addr=peer, headers=headers)
        return answer.status_code

    assert status("127.0.0.1", "10.1.2.3") == 200  # the proxy forwards an allowed client
    assert status("127.0.0.1", "192.0.2.7") == 403  # ... or a refused one
    # Only the last entry (the proxy's own) counts: a client-written one is ignored.
    assert status("127.0.0.1", "10.1.2.3, 192.0.2.7") == 403
    assert status("127.0.0.1", "not-an-address") == 403
    # From any other peer the header is ignored: the peer itself must be allowed.
    assert status("192.0.2.7", "10.1.2.3") == 403
    assert status("10.1.2.3", "192.0.2.7") == 200


def test_overload_is_503_never_404(cloud):
    uuid = cloud.add()
    client, metrics = app_for(cloud, max_live_lookups=1, slot_wait=0.05)
    client.simulate_get(f"/check/{new_uuid()}")  # session, visibility: established
    release = threading.Event()

    def slow(request, context):
        release.wait(5)
        return {"server": cloud.servers[uuid]}

    cloud.mocker.get(f"{cloud.compute_url}/servers/{uuid}", json=slow)
    holder = threading.Thread(target=client.simulate_get, args=(f"/check/{uuid}",))
    holder.start()
    time.sleep(0.2)
    try:
        refused = client.simulate_get(f"/check/{new_uuid()}")
        bulk = client.simulate_post("/check", json={"uuids": [new_uuid()]})
    finally:
        release.set()
        holder.join(5)
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    assert refused.headers["Instance-Exists"] == "unknown"
    assert bulk.json["results"][0]["code"] == 503
    assert bulk.json["results"][0]["exists"] is None
    assert client.simulate_get(f"/check/{new_uuid()}").status_code == 404  # recovered
    # Both refusals are counted: the single check and the bulk item.
    registry = metrics.registry
    assert registry.get_sample_value("instanceapi_overloaded_total") == 2
    labels = {"answer": "503", "source": "overloaded"}
    assert registry.get_sample_value("instanceapi_checks_total", labels) == 2


def test_metrics_count_checks_upstream_calls_and_tokens(cloud):
    client, _ = app_for(cloud)
    uuid = cloud.add()
    client.simulate_get(f"/check/{uuid}")
    client.simulate_get(f"/check/{new_uuid()}")
    client.simulate_get("/check/nonsense")
    text = client.simulate_get("/metrics").text
    assert 'instanceapi_checks_total{answer="200",source="live"} 1.0' in text
    assert 'instanceapi_checks_total{answer="404",source="live"} 1.0' in text
    assert 'instanceapi_checks_total{answer="400",source="input"} 1.0' in text
    assert 'instanceapi_token_renewals_total{target="cloud/RegionOne"} 1.0' in text
    assert (
        'instanceapi_upstream_requests_total{service="compute",status="200",'
        'target="cloud/RegionOne"}'
    ) in text
    assert "instanceapi_upstream_request_duration_seconds_bucket" in text


def test_connection_errors_are_counted(cloud):
    client, _ = app_for(cloud)
    client.simulate_get(f"/check/{new_uuid()}")
    cloud.fail(r".*nova.*/servers/", exc=requests.exceptions.ConnectionError("refused"))
    assert client.simulate_get(f"/check/{new_uuid()}").status_code == 500
    text = client.simulate_get("/metrics").text
    assert 'service="compute",status="error"' in text


def test_secrets_never_leak(requests_mock, caplog):
    caplog.set_level(logging.DEBUG)
    cloud = FakeCloud(requests_mock)
    subject_token = "gAAAAA-very-secret-token-value-1234567890"
    cloud.mocker.post(
        f"{cloud.auth_url}/auth/tokens",
        json=cloud._token,
        status_code=201,
        headers={"X-Subject-Token": subject_token},
    )
    client, _ = app_for(cloud)
    answers = [
        client.simulate_get(f"/check/{cloud.add()}"),
        client.simulate_get(f"/check/{new_uuid()}"),
    ]
    cloud.fail(
        r".*/auth/tokens",
        status_code=401,
        json={
            "error": {"code": 401, "message": "The request you have made requires authentication."}
        },
    )
    cloud.fail(r".*nova.*/servers/[0-9a-f-]{36}$", status_code=401, json={"error": {}})
    answers.append(client.simulate_get(f"/check/{new_uuid()}"))
    answers.append(client.simulate_get("/metrics"))
    assert answers[-2].status_code == 500
    sent = [r for r in requests_mock.request_history if r.method == "POST"]
    assert PASSWORD in sent[0].text  # the fake really received it...
    for text in [caplog.text, *(a.text for a in answers)]:
        assert PASSWORD not in text  # ...and it is nowhere else
        assert subject_token not in text


def test_a_dead_workers_index_gauges_disappear(tmp_path):
    """A worker that exits (reload, crash) must not hold the index age or size forever."""
    import os
    import subprocess
    import sys

    from prometheus_client import CollectorRegistry, multiprocess

    worker = (
        "from instanceapi.metrics import Metrics\n"
        "m = Metrics()\n"
        "m.index_size.labels('demo').set(7)\n"
        "m.index_success.labels('demo').set(1.0)\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    child = subprocess.Popen([sys.executable, "-c", worker], env=env)
    assert child.wait(timeout=60) == 0

    def gauges() -> set[str]:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(tmp_path))
        return {
            sample.name
            for family in registry.collect()
            for sample in family.samples
            if sample.name.startswith("instanceapi_index_")
        }

    assert gauges() == {
        "instanceapi_index_servers",
        "instanceapi_index_last_success_timestamp_seconds",
    }
    multiprocess.mark_process_dead(child.pid, str(tmp_path))  # what child_exit does
    assert gauges() == set()


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_metrics_say_whether_each_target_is_ready_and_why(cloud):
    metrics = Metrics()
    region = RegionChecker(cloud.nova())
    settings = Settings(regions=(RegionSpec("cloud"),))
    client = testing.TestClient(create_app(settings, checker=Checker([region]), metrics=metrics))
    name = region.nova.name
    client.simulate_get("/metrics")
    # Before the first refresh Keystone was never asked: not ready, for that reason.
    assert sample(metrics, "instanceapi_target_ready", target=name) == 0
    assert sample(metrics, "instanceapi_target_not_ready", target=name, reason="keystone") == 1
    assert sample(metrics, "instanceapi_target_not_ready", target=name, reason="index_stale") == 0
    region.check_identity()
    region.visibility.current(region.nova.identity())
    assert client.simulate_get("/readyz").status_code == 200
    client.simulate_get("/metrics")
    assert sample(metrics, "instanceapi_target_ready", target=name) == 1
    assert sample(metrics, "instanceapi_index_max_age_seconds", target=name) == 300
    assert sample(metrics, "instanceapi_target_not_ready", target=name, reason="keystone") == 0
