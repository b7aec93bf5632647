"""Read the shipped alert rules and dashboard: their PromQL, and the metric names it uses."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import yaml

MONITORING = Path(__file__).parent.parent / "deploy" / "monitoring"
RULES = MONITORING / "instanceapi-alerts.yml"
RULE_TESTS = MONITORING / "instanceapi-alerts.test.yml"
DASHBOARD = MONITORING / "instanceapi-dashboard.json"

#: Metrics the rules and the dashboard use that the code does not export yet, each
#: with the work that brings it. Empty now; the end-to-end test fails while a name
#: listed here is exported, so the list cannot go stale.
PENDING_METRICS: frozenset[str] = frozenset()

#: Grafana's macros and this dashboard's variables, replaced by something PromQL takes.
_GRAFANA = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "$job": ".*",
    "$instance": ".*",
    "$reap_instance": ".*",
}
_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "bool", "offset"}
    | {"group_left", "group_right", "inf", "nan"}
    # aggregations: may be followed by "by (...)" rather than "("
    | {"sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk", "bottomk"}
    | {"quantile", "count_values"}
)


def alert_rules() -> list[dict[str, object]]:
    """Return every alerting rule of the shipped file."""
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, object]:
    """Return the shipped Grafana dashboard."""
    loaded: dict[str, object] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> list[dict[str, object]]:
    """Return the dashboard's panels (rows left out)."""
    return [p for p in dashboard()["panels"] if p["type"] != "row"]  # type: ignore[attr-defined]


def dashboard_queries() -> Iterator[tuple[str, str]]:
    """Yield (where, PromQL) for every panel query, with Grafana's variables filled in."""
    for panel in panels():
        for target in panel["targets"]:  # type: ignore[attr-defined]
            expr = target["expr"]
            for macro, value in _GRAFANA.items():
                expr = expr.replace(macro, value)
            yield f"{panel['title']} / {target['refId']}", expr


def rule_queries() -> Iterator[tuple[str, str]]:
    """Yield (alert, PromQL) for every rule expression, and every query its templates run."""
    for rule in alert_rules():
        yield str(rule["alert"]), str(rule["expr"])
        for text in rule["annotations"].values():  # type: ignore[attr-defined]
            for found in re.findall(r'printf "((?:[^"\\]|\\.)*)"', text):
                yield f"{rule['alert']} annotation", found.replace("%q", '"x"')


def metric_names(expr: str) -> set[str]:
    """Return the metric names a PromQL expression selects (a small lexer, not a parser)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = re.sub(r"(?<![\w:])\d[\w.]*", " ", text)  # numbers and durations (offset 5m)
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1 ", text
    )  # label lists
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        followed = text[match.end() :].lstrip()
        word = match.group()
        if followed.startswith("(") or word.lower() in _KEYWORDS:
            continue  # a function or an operator
        names.add(word)
    return names


def every_name_used() -> dict[str, set[str]]:
    """Return {metric name: where it is used} over the rules and the dashboard."""
    used: dict[str, set[str]] = {}
    for where, expr in [*rule_queries(), *dashboard_queries()]:
        for name in metric_names(expr):
            used.setdefault(name, set()).add(where)
    return used
