"""A real Prometheus on loopback: scrapes the service under Gunicorn and reap's metrics file
(through a real node_exporter), evaluates the shipped alert rules, and fires them.

The rules are loaded as shipped, except that every `for:` is cut to a few seconds and
Prometheus scrapes and evaluates every second, so that an alert fires within seconds.
"""

from __future__ import annotations

import contextlib
import io
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from instanceapi.reap.cli import main as reap_main
from instanceapi.testing import SimulatedCloud, seed_demo
from instanceapi.testing.harness import ServiceProcess, service_env, terminate
from instanceapi.testing.satellite import SimulatedSatellite
from tests.fakes import require_tool
from tests.monitoring import PENDING_METRICS, RULES, every_name_used

FOR = "2s"
WAIT = 60.0  # seconds, at most, for anything Prometheus should see


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(what: str, probe: Callable[[], Any], timeout: float = WAIT) -> Any:
    """Return probe()'s first truthy value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def daemon(argv: list[str], url: str, log: Path) -> Iterator[str]:
    """Run a server until the block ends; yield its URL once it answers."""
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:

            def up() -> bool:
                if process.poll() is not None:
                    raise AssertionError(f"{argv[0]} exited:\n{log.read_text()}")
                with contextlib.suppress(requests.RequestException):
                    return requests.get(url, timeout=2).status_code == 200
                return False

            wait_until(f"{argv[0]} to answer {url}", up)
            yield url.removesuffix("/-/ready")
        finally:
            terminate(process)


def quick_rules(directory: Path) -> Path:
    """The shipped rules with every `for:` cut to FOR."""
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = FOR
    path = directory / "rules.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def prometheus_config(directory: Path, service: str, exporter: str) -> Path:
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(quick_rules(directory))],
        "scrape_configs": [
            {"job_name": "instanceapi", "static_configs": [{"targets": [service]}]},
            {"job_name": "node", "static_configs": [{"targets": [exporter]}]},
        ],
    }
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class Stack:
    cloud: SimulatedCloud
    service: ServiceProcess
    prometheus: str
    textfiles: Path
    tmp: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=5)
        answer.raise_for_status()
        result: list[dict[str, Any]] = answer.json()["data"]["result"]
        return result

    def alerts(self, name: str) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.prometheus}/api/v1/alerts", timeout=5)
        answer.raise_for_status()
        return [a for a in answer.json()["data"]["alerts"] if a["labels"]["alertname"] == name]

    def firing(self, name: str) -> list[dict[str, Any]]:
        return [a for a in self.alerts(name) if a["state"] == "firing"]

    def metric_names(self) -> set[str]:
        answer = requests.get(f"{self.prometheus}/api/v1/label/__name__/values", timeout=5)
        answer.raise_for_status()
        return set(answer.json()["data"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    prometheus = require_tool("prometheus")
    exporter = require_tool("prometheus-node-exporter")
    tmp = tmp_path_factory.mktemp("monitoring")
    textfiles = tmp / "textfiles"
    textfiles.mkdir()
    with SimulatedCloud() as cloud:
        seed_demo(cloud)
        env = service_env(
            cloud, tmp, INSTANCEAPI_REFRESH_INTERVAL="1", INSTANCEAPI_VISIBILITY_INTERVAL="5"
        )
        with ServiceProcess(env, ready_path="/readyz") as service:
            node = f"127.0.0.1:{free_port()}"
            node_argv = [
                exporter, f"--web.listen-address={node}", "--collector.disable-defaults",
                "--collector.textfile", f"--collector.textfile.directory={textfiles}",
            ]  # fmt: skip
            with daemon(node_argv, f"http://{node}/metrics", tmp / "node.log"):
                web = f"127.0.0.1:{free_port()}"
                config = prometheus_config(tmp, service.url.split("//", 1)[1], node)
                prom_argv = [
                    prometheus, f"--config.file={config}", f"--web.listen-address={web}",
                    f"--storage.tsdb.path={tmp / 'tsdb'}", "--log.level=warn",
                ]  # fmt: skip
                with daemon(prom_argv, f"http://{web}/-/ready", tmp / "prometheus.log") as url:
                    yield Stack(cloud, service, url, textfiles, tmp)


def test_not_ready_alert_fires_when_keystone_breaks_and_resolves(stack):
    wait_until(
        "Prometheus to see the target ready",
        lambda: [r for r in stack.query("instanceapi_target_ready") if r["value"][1] == "1"],
    )
    assert stack.alerts("InstanceapiTargetNotReady") == []
    stack.cloud.fault("keystone", down=True)
    try:
        (alert,) = wait_until(
            "InstanceapiTargetNotReady to fire",
            lambda: stack.firing("InstanceapiTargetNotReady"),
        )
        assert alert["labels"]["severity"] == "critical"
        assert alert["labels"]["target"] == "demo/RegionOne"
        assert "Reason now: keystone." in alert["annotations"]["description"]
        assert requests.get(f"{stack.service.url}/readyz", timeout=5).status_code == 503
    finally:
        stack.cloud.clear_faults()
    wait_until(
        "InstanceapiTargetNotReady to resolve",
        lambda: stack.alerts("InstanceapiTargetNotReady") == [],
    )
    assert requests.get(f"{stack.service.url}/readyz", timeout=5).status_code == 200


def run_reap(stack: Stack, sat: SimulatedSatellite, *extra: str) -> int:
    out = io.StringIO()
    argv = [
        "--satellite-url", sat.url, "--satellite-user", sat.user,
        "--service-url", stack.service.url, "--satellite-retries", "0",
        "--max-delete-percent", "25", "--allow-plain-http",
        "--state-file", str(stack.tmp / "reap-state.json"),
        "--metrics-file", str(stack.textfiles / "instanceapi-reap.prom"), *extra,
    ]  # fmt: skip
    env = {"INSTANCEAPI_REAP_SATELLITE_PASSWORD": sat.password}
    return reap_main(argv, env=env, stdout=out, stderr=out)


@pytest.fixture(scope="module")
def reap_runs(stack) -> list[int]:
    """A reap run that succeeds, then (once scraped) one that cannot read Satellite."""
    with SimulatedSatellite() as sat:
        for n, server in enumerate(stack.cloud.servers()):
            sat.add_guest(f"vm{n:02d}.cloud.example.com", server.id)
        sat.add_host("metal.example.com", product="PowerEdge R650")
        statuses = [run_reap(stack, sat)]
        assert statuses == [0]
        wait_until(
            "Prometheus to scrape the successful run",
            lambda: stack.query("instanceapi_reap_last_run_kept"),
        )
        sat.fail_requests("/api/v2/fact_values", page=1, times=100)
        statuses.append(run_reap(stack, sat))
    return statuses


def test_reap_run_failure_alert_fires_from_its_metrics_file(stack, reap_runs):
    assert reap_runs == [0, 3]
    (alert,) = wait_until(
        "InstanceapiReapRunFailed to fire", lambda: stack.firing("InstanceapiReapRunFailed")
    )
    assert alert["annotations"]["summary"] == "instanceapi reap: last run exited 3"
    assert alert["labels"]["job"] == "node"
    # The success a moment ago is remembered: not "no success for two days".
    (since,) = stack.query("time() - instanceapi_reap_last_success_timestamp_seconds")
    assert 0 <= float(since["value"][1]) < WAIT * 2
    assert stack.alerts("InstanceapiReapNotSucceeding") == []


def test_every_metric_the_rules_and_dashboard_use_is_exported(stack, reap_runs):
    """Names come from what Prometheus scraped: the service and the reap run's file."""
    stack.cloud.fault("nova", status=500)  # a failed index refresh, for its counter
    try:
        wait_until(
            "a refresh failure to be scraped",
            lambda: stack.query("instanceapi_index_refresh_failures_total"),
        )
    finally:
        stack.cloud.clear_faults()
    used = every_name_used()
    wanted = set(used) - PENDING_METRICS
    deadline = time.monotonic() + 20  # a few scrapes: then report what is missing
    while not wanted <= (exported := stack.metric_names()) and time.monotonic() < deadline:
        time.sleep(0.25)
    missing = {name: sorted(used[name]) for name in wanted - exported}
    assert missing == {}, "used in rules or dashboard, exported by nothing"
    assert PENDING_METRICS.isdisjoint(exported), "exported now: remove from PENDING_METRICS"
