"""The shipped alert rules and dashboard, checked with promtool (no server needed)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fakes import require_tool
from tests.monitoring import (
    RULE_TESTS,
    RULES,
    alert_rules,
    dashboard,
    dashboard_queries,
    metric_names,
    panels,
    rule_queries,
)

ROOT = Path(__file__).parent.parent
TIMER = ROOT / "deploy" / "systemd" / "instanceapi-reap.timer"
#: systemd's calendar shorthands and how often each fires.
PERIODS = {"hourly": 3600, "daily": 86400, "weekly": 7 * 86400}


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("promtool"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


def test_rules_pass_promtool_check():
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout


def test_rule_unit_tests_pass():
    done = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_firing_case_and_a_quiet_case():
    cases: dict[str, set[bool]] = {}
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in test["alert_rule_test"]:
            cases.setdefault(case["alertname"], set()).add(bool(case.get("exp_alerts")))
    assert cases == {rule["alert"]: {True, False} for rule in alert_rules()}


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_every_alert_says_what_to_do(rule):
    notes = rule["annotations"]
    assert set(notes) == {"summary", "description", "runbook"}
    assert rule["labels"]["severity"] in {"warning", "critical"}
    assert len(notes["runbook"].split()) >= 15  # what it means, and what to check first


def test_reap_alert_waits_twice_the_timer_period():
    calendar = re.search(r"^OnCalendar=(\S+)$", TIMER.read_text(), re.M)
    assert calendar and calendar.group(1) in PERIODS
    (rule,) = [r for r in alert_rules() if r["alert"] == "InstanceapiReapNotSucceeding"]
    assert rule["expr"].endswith(f"> 2 * {PERIODS[calendar.group(1)]}")


def test_dashboard_queries_pass_promtool(tmp_path):
    """promtool parses every panel query (as a recording rule: the same PromQL parser)."""
    queries = list(dashboard_queries())
    rules = [
        {"record": f"dashboard:query_{n}", "expr": expr} for n, (_, expr) in enumerate(queries)
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(queries)} rules found" in done.stdout


def test_annotation_queries_pass_promtool(tmp_path):
    queries = [expr for where, expr in rule_queries() if where.endswith("annotation")]
    assert queries  # the not-ready reason and the cap's absent count
    rules = [{"record": f"annotation:query_{n}", "expr": q} for n, q in enumerate(queries)]
    path = tmp_path / "annotation-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "annotations", "rules": rules}]}))
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_broken_query_fails_the_check(tmp_path):
    path = tmp_path / "broken.yml"
    rule = {"record": "x:y", "expr": "sum by (target (instanceapi_target_ready)"}
    path.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [rule]}]}))
    assert promtool("check", "rules", str(path)).returncode != 0


def test_dashboard_shape():
    board = dashboard()
    assert board["uid"] == "instanceapi" and board["schemaVersion"] >= 36
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert panel["title"] and len(panel["description"]) > 40, panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"] and all(t["expr"] for t in panel["targets"])


def test_readme_lists_every_dashboard_panel_and_alert():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Monitoring", 1)[1].split("\n## ", 1)[0]
    for panel in panels():
        assert f"| {panel['title']} |" in section, panel["title"]
    for rule in alert_rules():
        assert rule["alert"] in section, rule["alert"]


def test_metric_name_lexer():
    expr = 'sum by (le) (rate(a_bucket{x="y"}[5m])) > 2 * 86400 and on (i) b offset 1h'
    assert metric_names(expr) == {"a_bucket", "b"}
    assert metric_names("time() - max without (reason) (c)") == {"c"}


def test_reap_unit_writes_its_metrics_where_node_exporter_can_read(tmp_path):
    unit = (ROOT / "deploy" / "systemd" / "instanceapi-reap.service").read_text()
    assert "--metrics-file %t/instanceapi-reap/instanceapi-reap.prom" in unit
    for line in ("RuntimeDirectory=instanceapi-reap", "RuntimeDirectoryMode=0755"):
        assert re.search(rf"^{line}$", unit, re.M), line
    assert re.search(r"^RuntimeDirectoryPreserve=yes$", unit, re.M)  # kept between runs
    analyze = require_tool("systemd-analyze")
    script = Path(sys.executable).with_name("instanceapi")
    installed = tmp_path / "instanceapi-reap.service"
    installed.write_text(unit.replace("/opt/instanceapi/bin/instanceapi", str(script)))
    (tmp_path / TIMER.name).write_text(TIMER.read_text())
    done = subprocess.run(
        [analyze, "verify", str(installed), str(tmp_path / TIMER.name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
