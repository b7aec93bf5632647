"""Unit tests of reap's pure logic and local files: plan, state, audit, report, config."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from instanceapi.reap import plan, state
from instanceapi.reap.audit import AuditLog
from instanceapi.reap.cli import build_parser
from instanceapi.reap.config import ConfigError, parse_duration, resolve
from instanceapi.reap.model import Action, Answer, Candidate, Decision, Host, HostDetail, Verdict
from instanceapi.reap.report import Progress, render_summary, tally, write_report

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
U1 = "6f1c54a2-1b7e-4c55-9a53-3c0d2a1e9b01"
U2 = "6f1c54a2-1b7e-4c55-9a53-3c0d2a1e9b02"


def guest(host_id: int, uuid: str | None = U1, product: str | None = "OpenStack Compute", **kw):
    return Host(host_id, f"vm{host_id}.example.com", uuid=uuid, product=product, **kw)


# --- plan ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (U1.upper(), U1),
        (f"  {U1}\n", U1),
        (U1.replace("-", ""), U1),
        ("", None),
        (None, None),
        ("00000000-0000-0000-0000-000000000000", None),
        ("not-a-uuid", None),
        ("{" + U1 + "}", None),
        (U1[:-1], None),
    ],
)
def test_canonical_uuid(raw, expected):
    assert plan.canonical_uuid(raw) == expected


def test_select_skips_everything_that_is_not_an_openstack_guest_with_a_uuid():
    hosts = [
        guest(1),
        guest(2, uuid=None),
        guest(3, uuid="  "),
        guest(4, uuid="garbage"),
        guest(5, product=None),
        guest(6, product="VMware Virtual Platform"),
        guest(7, product="OpenStack Nova"),
        Host(8, "db1.prod.example.com", uuid=U2, product="openstack compute "),
    ]
    policy = plan.Policy(exclude=("*.PROD.example.com",))
    candidates, skipped = plan.select(hosts, policy)
    assert [c.host.id for c in candidates] == [1, 7]
    assert all(c.uuid == U1 for c in candidates)
    reasons = {d.host.id: d.reason for d in skipped}
    assert reasons == {
        2: "no-uuid",
        3: "no-uuid",
        4: "invalid-uuid",
        5: "not-openstack",
        6: "not-openstack",
        8: "excluded-name",
    }
    assert all(d.action is Action.SKIP for d in skipped)


def test_select_accepts_configured_products_only():
    policy = plan.Policy(products=frozenset({"my cloud"}))
    candidates, skipped = plan.select([guest(1), guest(2, product="My Cloud")], policy)
    assert [c.host.id for c in candidates] == [2]
    assert skipped[0].reason == "not-openstack"


def test_classify_keeps_everything_but_absence_and_guards_compute_resources():
    cands = [
        Candidate(guest(1), U1),
        Candidate(guest(2, uuid=U2), U2),
        Candidate(guest(3, uuid=U2, compute_resource_id=4), U2),
        Candidate(guest(4, uuid="6f1c54a2-1b7e-4c55-9a53-3c0d2a1e9b03"), "x"),
    ]
    verdicts = {U1: Verdict(Answer.PRESENT), U2: Verdict(Answer.ABSENT)}
    kept, absent = plan.classify(cands, verdicts)
    assert [c.host.id for c in absent] == [2]
    assert {d.host.id: d.reason for d in kept} == {
        1: "present",
        3: "compute-resource",
        4: "no-authoritative-answer",
    }


@pytest.mark.parametrize(
    ("absent", "candidates", "breach"),
    [(0, 0, False), (10, 200, False), (11, 1000, True), (5, 100, False), (6, 100, True)],
)
def test_cap_breach(absent, candidates, breach):
    policy = plan.Policy(max_delete=10, max_delete_percent=5)
    assert (plan.cap_breach(absent, candidates, policy) is not None) is breach


REG = {"registration": "c0ffee00-0000-4000-8000-000000000001", "registered_at": "2024-01-01"}


def test_guard_reasons():
    cand = Candidate(guest(1, **REG), U1)
    policy = plan.Policy(min_checkin_age=timedelta(days=7))
    old = T0 - timedelta(days=8)

    def detail(**kw):
        base = {"id": 1, "name": "vm1.example.com", "last_checkin": old, "uuid": U1.upper(), **REG}
        return HostDetail(**{**base, **kw})

    assert plan.guard(cand, detail(), policy, T0) is None
    assert plan.guard(cand, detail(name="other"), policy, T0) == "host-changed"
    assert plan.guard(cand, detail(compute_resource_id=3), policy, T0) == "compute-resource"
    protected = detail(parameters={"instanceapi_protect": "True"})
    assert plan.guard(cand, protected, policy, T0) == "protected"
    unprotected = detail(parameters={"instanceapi_protect": "false"})
    assert plan.guard(cand, unprotected, policy, T0) is None
    assert plan.guard(cand, detail(last_checkin=None), policy, T0) == "no-checkin-time"
    recent = detail(last_checkin=T0 - timedelta(days=1))
    assert plan.guard(cand, recent, policy, T0) == "recent-checkin"
    assert plan.guard(cand, recent, plan.Policy(), T0) is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"uuid": U2}, "uuid-changed"),
        ({"uuid": None}, "uuid-changed"),
        ({"registration": "c0ffee00-0000-4000-8000-000000000002"}, "re-registered"),
        ({"registered_at": "2025-03-01"}, "re-registered"),
        ({"registration": None}, "re-registered"),
        ({"parameters": {"instanceapi_protect": "*****"}}, "protected"),
    ],
)
def test_a_changed_machine_or_a_hidden_protection_keeps_the_host(change, reason):
    """Issue 10 items 3 and 4: the pre-delete re-read must show the same machine."""
    cand = Candidate(guest(1, **REG), U1)
    base = {"id": 1, "name": "vm1.example.com", "uuid": U1, **REG}
    assert plan.guard(cand, HostDetail(**base), plan.Policy(), T0) is None
    assert plan.guard(cand, HostDetail(**{**base, **change}), plan.Policy(), T0) == reason
    unregistered = Candidate(guest(1), U1)
    assert plan.guard(unregistered, HostDetail(**base), plan.Policy(), T0) == "not-registered"


# --- state ---------------------------------------------------------------------


def test_advance_counts_sightings_spaced_by_the_interval():
    hour = timedelta(hours=1)
    seen = {1: ("vm1", U1)}
    marks = state.advance({}, seen, T0, hour)
    assert marks[1].count == 1 and state.due(marks, 2) == set()
    soon = state.advance(marks, seen, T0 + timedelta(minutes=10), hour)
    assert soon[1].count == 1, "a quick second run must not count"
    later = state.advance(soon, seen, T0 + hour, hour)
    assert later[1].count == 2 and state.due(later, 2) == {1}
    assert later[1].first_absent == T0


def test_advance_drops_hosts_not_absent_and_restarts_changed_ones():
    marks = state.advance({}, {1: ("vm1", U1), 2: ("vm2", U2)}, T0, timedelta(0))
    marks = state.advance(marks, {2: ("vm2", U1)}, T0 + timedelta(hours=2), timedelta(0))
    assert set(marks) == {2}
    assert marks[2].count == 1 and marks[2].uuid == U1


def test_advance_ignores_a_clock_that_went_backwards():
    marks = state.advance({}, {1: ("vm1", U1)}, T0, timedelta(hours=1))
    back = state.advance(marks, {1: ("vm1", U1)}, T0 - timedelta(days=1), timedelta(hours=1))
    assert back[1].count == 1


def test_state_file_round_trip_and_atomic_replace(tmp_path):
    store = state.StateFile(tmp_path / "sub" / "state.json")
    assert store.load() == ({}, None)
    marks = state.advance({}, {7: ("vm7", U1)}, T0, timedelta(0))
    store.save(marks)
    assert store.load() == (marks, None)
    store.save({})
    assert store.load() == ({}, None)
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["state.json"]


def test_state_file_survives_a_crash_before_rename(tmp_path, monkeypatch):
    store = state.StateFile(tmp_path / "state.json")
    marks = state.advance({}, {7: ("vm7", U1)}, T0, timedelta(0))
    store.save(marks)

    def crash(src, dst):
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        store.save({})
    monkeypatch.undo()
    assert store.load() == (marks, None)
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[1, 2]",
        '{"version": 99, "hosts": {}}',
        '{"version": 1, "hosts": {"x": {}}}',
        '{"version": 1, "hosts": {"1": {"name": "a", "uuid": "b", "count": 1,'
        ' "first_absent": "2025-01-01T00:00:00", "last_counted": "2025-01-01T00:00:00"}}}',
    ],
)
def test_unreadable_state_file_is_moved_aside_and_treated_as_empty(tmp_path, content):
    path = tmp_path / "state.json"
    path.write_text(content)
    assert state.StateFile(path).load(repair=False)[0] == {}
    assert path.read_text() == content, "a dry-run leaves the file alone"
    marks, warning = state.StateFile(path).load()
    assert marks == {} and "moved to" in (warning or "")
    assert (tmp_path / "state.json.corrupt").read_text() == content
    assert not path.exists()


def test_lock_refuses_a_second_run(tmp_path):
    store = state.StateFile(tmp_path / "state.json")
    with store.lock(), pytest.raises(state.StateError), state.StateFile(store.path).lock():
        pass
    with store.lock():
        pass


# --- audit and report ----------------------------------------------------------


def decisions() -> list[Decision]:
    return [
        Decision(guest(1), Action.SKIP, "no-uuid", outcome="skipped"),
        Decision(guest(2), Action.KEEP, "present", uuid=U1, answer=Answer.PRESENT, outcome="kept"),
        Decision(guest(3), Action.KEEP, "no-authoritative-answer", uuid=U1, answer=Answer.UNKNOWN),
        Decision(guest(4), Action.KEEP, "protected", uuid=U1, answer=Answer.ABSENT),
        Decision(
            guest(5), Action.PENDING, "absent", uuid=U1, answer=Answer.ABSENT, outcome="marked 1/2"
        ),
        Decision(
            guest(6), Action.DELETE, "confirmed", uuid=U1, answer=Answer.ABSENT, outcome="deleted"
        ),
        Decision(
            guest(7),
            Action.DELETE,
            "confirmed",
            uuid=U2,
            answer=Answer.ABSENT,
            outcome="delete-failed: HTTP 500",
        ),
    ]


def test_audit_appends_one_line_per_decision(tmp_path):
    path = tmp_path / "log" / "audit.jsonl"
    log = AuditLog(path, run_id="r1", mode="apply")
    assert log.write(decisions(), T0) == 7
    assert log.write([], T0) == 0
    AuditLog(path, run_id="r2", mode="dry-run").write(decisions()[:1], T0)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 8
    assert lines[5] == {
        "time": T0.isoformat(),
        "run": "r1",
        "mode": "apply",
        "host": "vm6.example.com",
        "host_id": 6,
        "uuid": U1,
        "answer": "absent",
        "action": "delete",
        "reason": "confirmed",
        "outcome": "deleted",
        "detail": "",
    }
    assert lines[7]["run"] == "r2"


def test_tally_and_summary():
    counts = tally(decisions())
    assert counts == {
        "skipped": 1,
        "present": 1,
        "unknown": 1,
        "guarded": 1,
        "pending": 1,
        "deleted": 1,
        "failed": 1,
    }
    text = render_summary(decisions(), mode="apply", hosts_read=7, headline="applied")
    assert "deleted              1" in text
    assert "skipped                1  (no-uuid 1)" in text
    assert "absent, kept         1  (protected 1)" in text
    assert "vm7.example.com  id=7" in text and "delete-failed: HTTP 500" in text
    dry = render_summary(decisions(), mode="dry-run", hosts_read=7, headline="dry-run")
    assert "would delete" in dry and "nothing deleted" in dry


@pytest.mark.parametrize("name", ["report.csv", "report.json"])
def test_report_has_one_row_per_host(tmp_path, name):
    path = tmp_path / name
    write_report(path, decisions())
    if name.endswith(".json"):
        rows = json.loads(path.read_text())
    else:
        rows = list(csv.DictReader(path.open()))
    assert [str(r["host_id"]) for r in rows] == [str(i) for i in range(1, 8)]
    assert rows[6]["outcome"] == "delete-failed: HTTP 500"


def test_progress_only_on_a_terminal():
    quiet = io.StringIO()
    Progress(quiet)("checking", 1, 2)
    assert quiet.getvalue() == ""
    loud = io.StringIO()
    bar = Progress(loud, enabled=True)
    bar("checking", 2, 2)
    bar.clear()
    assert "checking: 2/2" in loud.getvalue()


# --- config --------------------------------------------------------------------

BASE = ["--satellite-url", "https://sat.example.com/", "--satellite-user", "admin"]
BASE += ["--service-url", "https://instanceapi.example.com"]


def parse(*extra: str) -> argparse.Namespace:
    return build_parser().parse_args([*BASE, *extra])


def test_config_reads_secrets_from_env_file_or_credentials(tmp_path):
    env = {"INSTANCEAPI_REAP_SATELLITE_PASSWORD": "s3cret", "HOME": str(tmp_path)}
    config = resolve(parse(), env)
    assert config.satellite_secret == "s3cret"
    assert "s3cret" not in repr(config)
    assert config.satellite_url == "https://sat.example.com"
    assert config.state_file == tmp_path / ".local/state/instanceapi-reap/state.json"
    assert config.audit_log == config.state_file.parent / "audit.jsonl"
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    assert (
        resolve(parse("--satellite-password-file", str(secret)), env).satellite_secret
        == "from-file"
    )
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "satellite-password").write_text("cred")
    (creds / "service-token").write_text("tok")
    systemd = {"CREDENTIALS_DIRECTORY": str(creds), "STATE_DIRECTORY": "/var/lib/x"}
    config = resolve(parse(), {**systemd, "LOGS_DIRECTORY": "/var/log/x"})
    assert (config.satellite_secret, config.service_token) == ("cred", "tok")
    assert config.state_file == Path("/var/lib/x/state.json")
    assert config.audit_log == Path("/var/log/x/audit.jsonl")


def test_config_builds_scope_and_rails():
    env = {"INSTANCEAPI_REAP_SATELLITE_PASSWORD": "x"}
    args = parse(
        "--organization", "ACME", "--location", "Paris", "--hostgroup", "cloud/web",
        "--search", "name ~ web", "--confirm-interval", "30m", "--canary", U1.upper(),
        "--min-last-checkin-age", "7d", "--product", "My Cloud", "--apply",
    )  # fmt: skip
    settings = resolve(args, env).settings
    assert settings.search == (
        '(name ~ web) and organization = "ACME" and location = "Paris"'
        ' and hostgroup_title = "cloud/web"'
    )
    assert settings.confirm_interval == timedelta(minutes=30)
    assert settings.canary == U1 and settings.apply
    assert settings.policy.min_checkin_age == timedelta(days=7)
    assert settings.policy.products == frozenset({"my cloud"})
    assert resolve(parse(), env).settings.apply is False
    assert settings.narrow_by == ("organization_id", "location_id")
    assert (settings.budget, settings.budget_window) == (None, timedelta(days=7))
    rails = resolve(parse("--budget", "3", "--budget-window", "30d"), env).settings
    assert (rails.budget, rails.budget_window) == (3, timedelta(days=30))


@pytest.mark.parametrize("which", ["--satellite-url", "--service-url"])
def test_plain_http_is_refused_unless_the_risk_is_accepted(which):
    """Issue 11 item 3: http:// carries the password or token in clear."""
    env = {"INSTANCEAPI_REAP_SATELLITE_PASSWORD": "x"}
    with pytest.raises(ConfigError, match=r"plain HTTP.*--allow-plain-http"):
        resolve(parse(which, "http://example.com"), env)
    accepted = resolve(parse(which, "http://example.com", "--allow-plain-http"), env)
    assert "http://example.com" in (accepted.satellite_url, accepted.service_url)
    by_env = {**env, "INSTANCEAPI_REAP_ALLOW_PLAIN_HTTP": "yes"}
    assert resolve(parse(which, "http://example.com"), by_env)


@pytest.mark.parametrize(
    ("extra", "env", "message"),
    [
        ((), {}, "--satellite-password-file"),
        (("--satellite-password-file", "/nonexistent"), {}, "cannot read secret"),
        (("--canary", "nope"), {"INSTANCEAPI_REAP_SATELLITE_PASSWORD": "x"}, "--canary"),
        (("--confirm-runs", "0"), {"INSTANCEAPI_REAP_SATELLITE_PASSWORD": "x"}, "--confirm-runs"),
        (("--max-delete-percent", "101"), {"INSTANCEAPI_REAP_SATELLITE_PASSWORD": "x"}, "percent"),
        (("--confirm-interval", "soon"), {"INSTANCEAPI_REAP_SATELLITE_PASSWORD": "x"}, "duration"),
        (("--organization", 'a"b'), {"INSTANCEAPI_REAP_SATELLITE_PASSWORD": "x"}, "quote"),
        (("--budget-window", "0"), {"INSTANCEAPI_REAP_SATELLITE_PASSWORD": "x"}, "--budget-window"),
        (("--budget", "-1"), {"INSTANCEAPI_REAP_SATELLITE_PASSWORD": "x"}, "--budget"),
    ],
)
def test_config_errors_name_the_option(extra, env, message):
    with pytest.raises(ConfigError, match=message):
        resolve(parse(*extra), env)


def test_config_requires_urls():
    args = build_parser().parse_args([])
    with pytest.raises(ConfigError, match="--satellite-url"):
        resolve(args, {"INSTANCEAPI_REAP_SATELLITE_PASSWORD": "x"})
    env = {"INSTANCEAPI_REAP_SATELLITE_URL": "ftp://x", "INSTANCEAPI_REAP_SATELLITE_USER": "u"}
    with pytest.raises(ConfigError, match="http"):
        resolve(args, env)


def test_parse_duration():
    assert parse_duration("90") == timedelta(seconds=90)
    assert parse_duration("1.5h") == timedelta(minutes=90)
    assert parse_duration("2w") == timedelta(days=14)
    with pytest.raises(ValueError, match="duration"):
        parse_duration("1y")


def test_config_client_certificate_needs_both_readable_files(tmp_path):
    env = {"INSTANCEAPI_REAP_SATELLITE_PASSWORD": "s3cret", "HOME": str(tmp_path)}
    cert, key = tmp_path / "client.crt", tmp_path / "client.key"
    cert.write_text("certificate")
    key.write_text("key")
    assert resolve(parse(), env).service_cert is None
    both = resolve(
        parse("--service-cert", str(cert)), {**env, "INSTANCEAPI_REAP_SERVICE_KEY": str(key)}
    )
    assert both.service_cert == (str(cert), str(key))
    with pytest.raises(ConfigError, match=r"--service-key .* is required with the other"):
        resolve(parse("--service-cert", str(cert)), env)
    with pytest.raises(ConfigError, match=r"--service-cert: .* is not a readable file"):
        resolve(parse("--service-cert", str(tmp_path / "nope"), "--service-key", str(key)), env)
