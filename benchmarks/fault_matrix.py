"""The fault matrix: every upstream fault against the real service, and what it answered.

Real Gunicorn, real keystoneauth1 + novaclient, the simulated cloud on 127.0.0.1
with fault injection. Each case applies one fault to a cloud holding known
existing and known deleted instances, asks every service (three ways of
running it, below) about them, removes the fault, and waits for the correct
answers to come back without a restart.

Services (columns of the table, "index"):
- warm:    admin credentials (absence by id), index refreshed every second: an
           instance listed in the fresh index is answered 200 with no upstream call.
- cold:    admin credentials, index stale (5 s max age, refreshed hourly): every
           question is a live lookup.
- listing: a reader allowed to list all projects (absence only from a DELETED
           record in the all-project listing read after the question), index
           warm, a full listing every 10 s and a visibility probe every 5 s.

Per case and service, the answers for: an existing instance in RegionOne (of
another project than the reader's), one in RegionTwo, one in RegionOne's cell2,
a deleted instance never asked about before (so no cached verdict), and an
invalid UUID. The expected answers are written per case below; a 404 for an
existing instance, or for a deleted one while some target could not confirm
it, is a false 404 and fails the case.

Run: python -m benchmarks.fault_matrix [--write docs/fault-matrix.md]
"""

from __future__ import annotations

import argparse
import contextlib
import re
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

from instanceapi.testing import SimulatedCloud
from instanceapi.testing.harness import ServiceProcess
from instanceapi.testing.model import RequestRecord

MODES = ("warm", "cold", "listing")
EXISTING = ("existing R1", "existing R2", "existing cell2")
COLUMNS = (*EXISTING, "deleted", "invalid")
INVALID = "not-a-uuid"
DOUBT = frozenset({500, 503})
#: Settings shared by every service: one OpenStack call may take 1 s, retried once.
COMMON_ENV = {
    "INSTANCEAPI_TIMEOUT": "1",
    "INSTANCEAPI_RETRIES": "1",
    # NOTE: no Keystone pause (default 30 s). Each worker pauses on its own, so a
    # pause from one case would still be running in the other worker when the
    # next case starts, and its 500 would name the previous fault. The pause has
    # its own tests (tests/test_budget.py, tests/test_security_e2e.py).
    "INSTANCEAPI_KEYSTONE_PAUSE": "0",
    # Readiness detail (index ages) is for clients that passed access control.
    "INSTANCEAPI_ALLOW_CIDRS": "127.0.0.1/32",
}
MODE_ENV = {
    "warm": {"INSTANCEAPI_REFRESH_INTERVAL": "1", "INSTANCEAPI_INDEX_MAX_AGE": "300"},
    "cold": {"INSTANCEAPI_REFRESH_INTERVAL": "3600", "INSTANCEAPI_INDEX_MAX_AGE": "5"},
    "listing": {
        "INSTANCEAPI_REFRESH_INTERVAL": "1",
        "INSTANCEAPI_INDEX_MAX_AGE": "300",
        # Short, so that a full listing and a probe fall within a case (items 4 and 6).
        "INSTANCEAPI_RESYNC_INTERVAL": "10",
        "INSTANCEAPI_VISIBILITY_INTERVAL": "5",
    },
}
MODE_USER = {"warm": "admin", "cold": "admin", "listing": "reader-all"}
MODE_WORKERS = {"warm": 2, "cold": 1, "listing": 1}
#: Generous: recovery waits on refresh backoff, which a loaded machine stretches.
RECOVERY_DEADLINE = 60.0


# -- the labs: one simulated cloud and its three services -----------------------------------------


@dataclass
class Lab:
    """A simulated cloud with known instances, and the services pointed at it."""

    name: str
    cloud: SimulatedCloud
    services: dict[str, ServiceProcess]
    existing: dict[str, str]
    #: What a deleted instance gets when nothing is wrong, per service.
    deleted_baseline: dict[str, int]
    workers: dict[str, set[int]] = field(default_factory=dict)
    #: A server another project is building during a case (None: none).
    building: str | None = None
    #: The services' wall clock is real time plus the seconds written here (see STEPPED_CLOCK).
    clock_step: Path | None = None
    workdir: Path | None = None

    def fresh_deleted(self) -> str:
        """Return an instance deleted just now, never asked about (no cached verdict)."""
        server = self.cloud.add_server(project="alpha", name="doomed")
        self.cloud.delete_server(server.id)
        return server.id

    def worker_pids(self, mode: str) -> set[int]:
        """Return the pids of a service's Gunicorn workers."""
        return self.services[mode].worker_pids()


def fresh_existing(cloud: SimulatedCloud) -> dict[str, str]:
    """Create the three existing instances the columns ask about; return their ids."""
    return {
        "existing R1": cloud.add_server(project="beta", name="r1").id,
        "existing R2": cloud.add_server(project="gamma", region="RegionTwo", name="r2").id,
        "existing cell2": cloud.add_server(project="beta", cell="cell2", name="c2").id,
    }


#: Installed as sitecustomize.py for every service: its time.time() (the wall clock,
#: not the monotonic one) is real time plus a step read from a file, as after an NTP
#: step. What libfaketime would do, in Python, re-read at most every 0.1 s.
STEPPED_CLOCK = """
import os, time
_real, _monotonic, _path = time.time, time.monotonic, os.environ.get("FAULT_MATRIX_CLOCK_STEP")
_cache = [0.0, -1.0]
def _stepped():
    now = _monotonic()
    if now - _cache[1] > 0.1:
        try:
            with open(_path) as f:
                _cache[0] = float(f.read() or 0)
        except (OSError, ValueError):
            _cache[0] = 0.0
        _cache[1] = now
    return _real() + _cache[0]
if _path:
    time.time = _stepped
"""


def start_lab(name: str, workdir: Path, *, max_microversion: str = "2.96") -> Lab:
    """Start a two-region cloud (pages of 4 servers) and its three services."""
    cloud = SimulatedCloud(
        regions=("RegionOne", "RegionTwo"), max_microversion=max_microversion, max_limit=4
    ).start()
    step = workdir / f"clock-step-{name}"
    step.write_text("0")
    (workdir / "clock").mkdir(exist_ok=True)
    (workdir / "clock" / "sitecustomize.py").write_text(STEPPED_CLOCK)
    try:
        existing = fresh_existing(cloud)
        for i in range(6):  # more than one page per region
            cloud.add_server(project="gamma", name=f"filler-{i}")
            cloud.add_server(project="gamma", region="RegionTwo", name=f"filler-{i}")
        with ThreadPoolExecutor(len(MODES)) as pool:
            started = dict(
                zip(
                    MODES,
                    pool.map(lambda m: _start_service(cloud, workdir, m, step), MODES),
                    strict=True,
                )
            )
    except BaseException:
        cloud.stop()
        raise
    old_nova = tuple(map(int, max_microversion.split("."))) < (2, 69)
    baseline = {m: 500 if m == "listing" and old_nova else 404 for m in MODES}
    lab = Lab(name, cloud, started, existing, baseline, clock_step=step, workdir=workdir)
    lab.workers = {m: lab.worker_pids(m) for m in MODES}
    return lab


def _start_service(
    cloud: SimulatedCloud, workdir: Path, mode: str, step: Path | None = None
) -> ServiceProcess:
    user = MODE_USER[mode]
    path = cloud.write_clouds_yaml(workdir / f"clouds-{user}-{id(cloud)}.yaml", user=user)
    env = {
        "OS_CLIENT_CONFIG_FILE": str(path),
        "INSTANCEAPI_CLOUDS": "demo",
        **COMMON_ENV,
        **MODE_ENV[mode],
    }
    if step is not None:
        env |= {"PYTHONPATH": str(workdir / "clock"), "FAULT_MATRIX_CLOCK_STEP": str(step)}
    service = ServiceProcess(env, workers=MODE_WORKERS[mode], ready_path="/healthz")
    service.start()
    return service


def stop_lab(lab: Lab) -> None:
    """Stop the services, then the cloud."""
    for service in lab.services.values():
        with contextlib.suppress(Exception):
            service.stop()
    lab.cloud.stop()


def wait_until_cold(lab: Lab, deadline: float = 30.0) -> None:
    """Wait until the cold service's index is older than its max age (5 s), bounded."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            body = requests.get(lab.services["cold"].url + "/readyz", timeout=10).json()
            ages = [t.get("index_age_seconds") for t in body["targets"]]
        except (requests.RequestException, ValueError, KeyError, TypeError):
            ages = []
        if ages and all(age is not None and age > 5.5 for age in ages):
            return
        time.sleep(0.5)
    raise RuntimeError(f"{lab.name}/cold: the index never went stale")


@contextlib.contextmanager
def labs(workdir: Path) -> Iterator[dict[str, Lab]]:
    """Start the main lab and the old-Nova lab (Nova offers 2.60 only); stop both after."""
    running: dict[str, Lab] = {}
    try:
        with ThreadPoolExecutor(2) as pool:
            main = pool.submit(start_lab, "main", workdir)
            old = pool.submit(start_lab, "old-nova", workdir, max_microversion="2.60")
            running["main"] = main.result()
            running["old-nova"] = old.result()
        for lab in running.values():
            wait_for_readiness(lab)
        for lab in running.values():
            wait_until_cold(lab)
        yield running
    finally:
        for lab in running.values():
            stop_lab(lab)


def wait_for_readiness(lab: Lab, deadline: float = 30.0) -> None:
    """Wait until every service answers an existing instance and knows its absence rule."""
    end = time.monotonic() + deadline
    for mode in MODES:
        while time.monotonic() < end:
            answer = ask(lab.services[mode], lab.existing["existing R1"])
            ready = ask_path(lab.services[mode], "/readyz")
            if answer.status == 200 and (ready.status == 200 or lab.name == "old-nova"):
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"{lab.name}/{mode} never became ready")


# -- asking ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One answer: the HTTP status (or what went wrong on the wire) and the reasons given."""

    status: int | str
    text: str = ""
    marker: str | None = None


def ask(service: ServiceProcess, uuid: str) -> Answer:
    """GET /check/<uuid>; never raises."""
    return ask_path(service, f"/check/{uuid}")


def ask_path(service: ServiceProcess, path: str) -> Answer:
    """GET a path; never raises."""
    try:
        response = requests.get(service.url + path, timeout=30)
    except requests.Timeout:
        return Answer("timeout")
    except requests.ConnectionError:
        return Answer("reset")
    return Answer(response.status_code, _reasons(response), response.headers.get("Instance-Exists"))


def _reasons(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if not isinstance(body, dict):
        return ""
    parts = [str(body.get("detail") or body.get("description") or "")]
    targets = [t for t in body.get("targets") or [] if isinstance(t, dict)]
    parts += [str(t.get("detail") or t.get("reason")) for t in targets]
    return " | ".join(parts)


def ask_all(
    lab: Lab, deleted: str, modes: tuple[str, ...] = MODES, *, sequential: bool = False
) -> dict[str, dict[str, Answer]]:
    """Ask every service about every column; return answers by mode and column.

    Services are asked in parallel; within one, all columns at once, or one at a
    time when `sequential` (then the first question after a token is rejected
    is the one that re-authenticates, and each answer names Keystone's fault).
    """
    uuids = {**lab.existing, "deleted": deleted, "invalid": INVALID}

    def one_service(mode: str) -> dict[str, Answer]:
        service = lab.services[mode]
        if sequential:
            return {c: ask(service, uuids[c]) for c in COLUMNS}
        with ThreadPoolExecutor(len(COLUMNS)) as pool:
            return dict(
                zip(COLUMNS, pool.map(lambda c: ask(service, uuids[c]), COLUMNS), strict=True)
            )

    with ThreadPoolExecutor(len(modes)) as pool:
        return dict(zip(modes, pool.map(one_service, modes), strict=True))


# -- cases ----------------------------------------------------------------------------------------


def expect(spec: str) -> dict[str, frozenset[int | str]]:
    """Parse "200 200 200|500 404" (existing R1, R2, cell2, deleted) into allowed answers."""
    parts = spec.split()
    assert len(parts) == 4, spec
    allowed = [frozenset(int(x) if x.isdigit() else x for x in p.split("|")) for p in parts]
    return {**dict(zip(COLUMNS[:4], allowed, strict=True)), "invalid": frozenset({400})}


HEALTHY = "200 200 200 404"
#: The index answers what it lists; everything else needs the (broken) upstream.
OUTAGE = {"warm": "200 200 200 500", "cold": "500 500 500 500", "listing": "200 200 200 500"}


@dataclass(frozen=True)
class Case:
    """One fault: how to cause it, what each service must answer, and how the 500 names it."""

    name: str
    apply: Callable[[Lab], None]
    expected: dict[str, str]
    names: str  # a regex every 500/503 body must match (besides naming a target)
    lab: str = "main"
    clear: Callable[[Lab], None] | None = None
    #: Ask one question at a time per service (token cases: see ask_all).
    sequential: bool = False
    #: Ask about existing instances created for this case (a wrong verdict that a
    #: service cached must not spill into later cases).
    fresh_existing: bool = False
    #: How those are created (default: fresh_existing).
    make_existing: Callable[[SimulatedCloud], dict[str, str]] | None = None


def nova_everywhere(**fault: object) -> Callable[[Lab], None]:
    """Return a fault applied to every region's Nova."""

    def apply(lab: Lab) -> None:
        for region in lab.cloud.regions:
            lab.cloud.fault("nova", region=region, **fault)  # type: ignore[arg-type]

    return apply


def keystone(**fault: object) -> Callable[[Lab], None]:
    """Return a Keystone fault that bites: tokens expire, so a new one is needed."""

    def apply(lab: Lab) -> None:
        lab.cloud.fault("keystone", **fault)  # type: ignore[arg-type]
        lab.cloud.expire_tokens()

    return apply


def _demote(lab: Lab) -> None:
    """Take the admin role away (Keystone revokes the tokens of a removed assignment)."""
    lab.cloud.add_user("admin", lab.cloud.password("admin"), "admin", ["member", "reader"])
    lab.cloud.revoke_tokens()


def _promote(lab: Lab) -> None:
    lab.cloud.add_user("admin", lab.cloud.password("admin"), "admin", ["admin", "member", "reader"])
    lab.cloud.revoke_tokens()


def _revoke(lab: Lab) -> None:
    lab.cloud.revoke_tokens()


def _cell_down(lab: Lab) -> None:
    lab.cloud.set_cell_down("cell2")


def _cell_up(lab: Lab) -> None:
    lab.cloud.set_cell_down("cell2", down=False)


def _region_two_down(lab: Lab) -> None:
    lab.cloud.fault("nova", region="RegionTwo", down=True)


def _listing_pages(lab: Lab) -> None:
    for region in lab.cloud.regions:  # changes-since listings of several pages, page 2 fails
        for i in range(5):
            lab.cloud.add_server(project="gamma", region=region, name=f"page-{i}")
        lab.cloud.fault("nova", region=region, fail_page=2)


def listing_fault(**fault: object) -> Callable[[Lab], None]:
    """Return a listing fault on every region, with changes-since listings of several pages."""

    def apply(lab: Lab) -> None:
        for region in lab.cloud.regions:
            for i in range(5):
                lab.cloud.add_server(project="gamma", region=region, name=f"page-{i}")
            lab.cloud.fault("nova", region=region, **fault)  # type: ignore[arg-type]

    return apply


def wall_clock_step(seconds: float) -> Callable[[Lab], None]:
    """Return a step of every service's wall clock, then instances created after it."""

    def apply(lab: Lab) -> None:
        assert lab.clock_step is not None
        lab.clock_step.write_text(str(seconds))
        time.sleep(0.3)  # every process re-reads the step within 0.1 s
        lab.existing = fresh_existing(lab.cloud)  # created after the step, asked at once

    return apply


def _clock_back(lab: Lab) -> None:
    assert lab.clock_step is not None
    lab.clock_step.write_text("0")


TIMED_OUT = r"timed out|ConnectTimeout|ReadTimeout"
# A failed re-authentication is reported as "Keystone (<url>), needed for <call>,
# failed: ..." (tests/test_regressions.py).
CASES = (
    Case("Keystone unreachable", keystone(down=True), OUTAGE, "unreachable", sequential=True),
    Case("Keystone answers 401", keystone(status=401), OUTAGE, "HTTP 401", sequential=True),
    Case("Keystone answers 500", keystone(status=500), OUTAGE, "HTTP 500", sequential=True),
    Case(
        "Keystone slower than the timeout", keystone(delay=2.5), OUTAGE, TIMED_OUT, sequential=True
    ),
    Case("Nova unreachable", nova_everywhere(down=True), OUTAGE, r"unreachable"),
    Case("Nova answers 500", nova_everywhere(status=500), OUTAGE, r"HTTP 500"),
    Case("Nova answers 503", nova_everywhere(status=503), OUTAGE, r"HTTP 503"),
    Case("Nova slower than the timeout", nova_everywhere(delay=2.5), OUTAGE, TIMED_OUT),
    Case("Nova answers invalid JSON", nova_everywhere(garbage=True), OUTAGE, r"unexpected answer"),
    Case(
        "Listing page 2 fails midway",
        _listing_pages,
        {"warm": HEALTHY, "cold": HEALTHY, "listing": "200 200 200 500"},
        r"GET /servers/detail failed: HTTP 500",
    ),
    Case(
        "Listing silently drops a cell (Nova < 2.69)",
        nova_everywhere(hide_cell="cell2"),
        {"warm": "200 200 200 404", "cold": "200 200 500 404", "listing": "200 200 200 500"},
        r"HTTP 500|2\.69",
        lab="old-nova",
    ),
    Case("Token revoked mid-run", _revoke, {m: HEALTHY for m in MODES}, r"^$", sequential=True),
    Case(
        "An UNKNOWN-status instance (cell down)",
        _cell_down,
        {
            "warm": "200 200 200|500 404",
            "cold": "200 200 500 404",
            "listing": "200 200 200|500 404",
        },
        r"UNKNOWN",
        clear=_cell_up,
    ),
    Case(
        "Two targets, RegionTwo down",
        _region_two_down,
        {"warm": "200 200 200 500", "cold": "200 500 200 500", "listing": "200 200 200 500"},
        r"demo/RegionTwo.*unreachable",
    ),
)

#: Existing instances created for the case may not be in the index yet: 200 or doubt.
UNINDEXED_OUTAGE = "200|500 200|500 200|500 500"
#: Issue 9: listings that never end or carry garbage, and steps of the wall clock.
ISSUE9_CASES = (
    Case(
        "Listing replays page 1 forever (marker ignored)",
        listing_fault(replay_pages=True),
        {"warm": HEALTHY, "cold": HEALTHY, "listing": "200 200 200 500"},
        r"did not advance",
    ),
    Case(
        "Listing page carries an item that is not a server",
        listing_fault(bad_item=True),
        {"warm": HEALTHY, "cold": HEALTHY, "listing": "200 200 200 500"},
        r"malformed page",
    ),
    Case(
        "Wall clock steps back 2 min; instances created after it",
        wall_clock_step(-120.0),
        {m: HEALTHY for m in MODES},
        r"^$",
        clear=_clock_back,
    ),
    Case(
        "Wall clock steps forward 1 h; instances created after it",
        wall_clock_step(3600.0),
        {m: HEALTHY for m in MODES},
        r"^$",
        clear=_clock_back,
    ),
)

# -- items 4 and 6 of issue 9: a cell down, servers being built (real Nova 34) --------------------


def _behind_a_down_cell(cloud: SimulatedCloud) -> dict[str, str]:
    """Existing instances; the cell2 one unchanged for an hour, its cell down from now."""
    existing = fresh_existing(cloud)
    cloud.set_cell_down("cell2")
    cloud.backdate(existing["existing cell2"], 3600.0)
    return existing


def _full_listing_then_cell_back(lab: Lab) -> None:
    """Wait until the listing service read full listings while cell2 was down; bring it back."""
    # Two first pages of a full listing-rule listing: most likely both regions' targets.
    _wait_for_requests(lab, lambda r: "changes-since=1970" in r.path and "marker=" not in r.path)
    time.sleep(1.0)  # the rest of their pages (a few dozen servers, on loopback)
    lab.cloud.set_cell_down("cell2", down=False)


def _skipping_refused(lab: Lab) -> None:
    lab.cloud.skip_down_cells(False)
    lab.cloud.set_cell_down("cell2")


def _skipping_restored(lab: Lab) -> None:
    lab.cloud.skip_down_cells(True)
    lab.cloud.set_cell_down("cell2", down=False)


def _just_scheduled(cloud: SimulatedCloud) -> dict[str, str]:
    """Existing instances; RegionOne's just scheduled: not in changes-since listings yet."""
    existing = fresh_existing(cloud)
    existing["existing R1"] = cloud.add_server(project="beta", name="r1", stage="unlisted").id
    return existing


def _soft_deleted(cloud: SimulatedCloud) -> dict[str, str]:
    """Existing instances; RegionOne's soft-deleted (restorable: it exists), so that a
    by-id rule wrongly adopted gives a false 404 (the default listing hides it)."""
    existing = fresh_existing(cloud)
    cloud.soft_delete_server(existing["existing R1"])
    cloud.backdate(existing["existing R1"], 3600.0)  # soft-deleted an hour ago
    return existing


def _probe_meets_a_server_being_built(lab: Lab) -> None:
    """Another project creates a server (the newest); wait for the listing service's probes."""
    lab.building = lab.cloud.add_server(project="gamma", name="building", stage="unscheduled").id
    # The probe's listing (unfiltered; limit=100 before issue 9), then its GET by id.
    probe = re.compile(r"/v2\.1/servers/detail\?all_tenants=1(&limit=100)?")
    _wait_for_requests(lab, lambda r: probe.fullmatch(r.path) is not None)
    _wait_for_requests(lab, lambda r: r.path.count("/") == 3 and "?" not in r.path, count=1)
    time.sleep(2.5)  # two index refreshes: a rule adopted now shapes the index asked


def _builds_finish(lab: Lab) -> None:
    for server_id in (lab.existing["existing R1"], lab.building):
        if server_id is not None:
            while lab.cloud.server(server_id).status == "BUILD":
                lab.cloud.advance_build(server_id)


def _wait_for_requests(
    lab: Lab, wanted: Callable[[RequestRecord], bool], *, count: int = 2
) -> None:
    """Wait (bounded) until `count` Nova requests made from now on are `wanted`."""
    before = lab.cloud.requests  # kept alive: the ids of its records stay unique
    old = {id(r) for r in before}
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        new = [r for r in lab.cloud.requests if id(r) not in old]
        if sum(1 for r in new if r.service == "nova" and wanted(r)) >= count:
            return
        time.sleep(0.1)
    raise RuntimeError("the service never sent the awaited requests")


CELL_AND_BUILD_CASES = (
    Case(
        "A cell down during a full listing, then back (Nova 34)",
        _full_listing_then_cell_back,
        {"warm": HEALTHY, "cold": HEALTHY, "listing": "200 200 200|500 404"},
        r"unreachable cell|UNKNOWN",
        clear=_cell_up,
        fresh_existing=True,
        make_existing=_behind_a_down_cell,
    ),
    Case(
        "A cell down, Nova not skipping it (list_records_by_skipping_down_cells=False)",
        _skipping_refused,
        {
            "warm": "200 200 200|500 404",
            "cold": "200 200 500 404",
            "listing": "200 200 200|500 500",
        },
        r"UNKNOWN|HTTP 500",
        clear=_skipping_restored,
    ),
    Case(
        "A new server not yet in changes-since listings (Nova 34)",
        lambda lab: None,
        {"warm": HEALTHY, "cold": HEALTHY, "listing": "500 200 200 404"},
        r"still being built",
        clear=_builds_finish,
        fresh_existing=True,
        make_existing=_just_scheduled,
    ),
    Case(
        "The probe meets a server still being built (Nova 34)",
        _probe_meets_a_server_being_built,
        # Listing: 500 until a full listing shows R1 (its soft-deletion was back-dated).
        {"warm": HEALTHY, "cold": HEALTHY, "listing": "200|500 200 200 404"},
        r"still being built",
        clear=_builds_finish,
        fresh_existing=True,
        make_existing=_soft_deleted,
    ),
)

#: Existing instances created for the case may not be in the index yet: 200 or doubt.
UNINDEXED_OUTAGE = "200|500 200|500 200|500 500"
#: Cases that once gave false 404s (found here; see tests/test_regressions.py).
REGRESSION_CASES = (
    Case(
        "Nova endpoint answers 404 to everything (a proxy without backend)",
        nova_everywhere(status=404),
        {m: UNINDEXED_OUTAGE for m in MODES},
        r"404",
        fresh_existing=True,
    ),
    Case(
        "The service account loses the admin role",
        _demote,
        {
            "warm": UNINDEXED_OUTAGE,
            "cold": UNINDEXED_OUTAGE,
            "listing": "200|500 200|500 200|500 404",
        },
        r"admin|visib|all-project|40[134]",
        clear=_promote,
        sequential=True,
        fresh_existing=True,
    ),
)
CASES = (*CASES, *CELL_AND_BUILD_CASES, *ISSUE9_CASES, *REGRESSION_CASES)


# -- running a case and judging it ----------------------------------------------------------------


@dataclass
class Row:
    """What one service answered in one case, and what was wrong with it."""

    case: str
    mode: str
    answers: dict[str, Answer]
    recovered_after: float | None
    problems: list[str]

    @property
    def false_404s(self) -> int:
        """Count 404s for existing instances (a deleted one's wrong 404 is in problems)."""
        return sum(1 for c in EXISTING if self.answers[c].status == 404)


def run_case(lab: Lab, case: Case) -> list[Row]:
    """Apply the fault, ask, clear it, wait for recovery; return one row per service."""
    deleted = lab.fresh_deleted()
    lab.cloud.clear_faults()
    usual = lab.existing
    if case.fresh_existing:
        lab.existing = (case.make_existing or fresh_existing)(lab.cloud)
    try:
        case.apply(lab)
        answers = ask_all(lab, deleted, sequential=case.sequential)
    finally:
        lab.cloud.clear_faults()
        if case.clear:
            case.clear(lab)
    try:
        recovered = wait_for_recovery(lab, deleted)
    finally:
        lab.existing = usual
    rows = []
    for mode in MODES:
        problems = judge(case, mode, answers[mode], lab)
        if recovered[mode] is None:
            problems.append(f"no recovery within {RECOVERY_DEADLINE:.0f}s")
        if lab.worker_pids(mode) != lab.workers[mode]:
            problems.append("a worker was restarted")
        rows.append(Row(case.name, mode, answers[mode], recovered[mode], problems))
    return rows


def judge(case: Case, mode: str, answers: dict[str, Answer], lab: Lab) -> list[str]:
    """Return what is wrong with one service's answers in one case."""
    allowed = expect(case.expected[mode])
    problems = []
    for column in COLUMNS:
        answer = answers[column]
        if answer.status == 404 and column != "deleted":
            problems.append(f"FALSE 404 for {column}")
        if answer.status not in allowed[column]:
            problems.append(
                f"{column}: {answer.status}, expected {sorted(allowed[column], key=str)}"
            )
        if answer.status in DOUBT and not (
            re.search(case.names, answer.text) and re.search(r"demo/Region", answer.text)
        ):
            problems.append(f"{column}: the {answer.status} does not name the fault: {answer.text}")
        if answer.status in (200, 404, 500) and column != "invalid":
            marker = {200: "true", 404: "false", 500: "unknown"}[answer.status]  # type: ignore[index]
            if answer.marker != marker:
                problems.append(f"{column}: Instance-Exists {answer.marker!r} on a {answer.status}")
    return problems


def wait_for_recovery(
    lab: Lab, deleted: str, modes: tuple[str, ...] = MODES
) -> dict[str, float | None]:
    """Return, per service, seconds until the healthy answers came back (None: never)."""
    started = time.monotonic()
    pending = set(modes)
    recovered: dict[str, float | None] = dict.fromkeys(modes)
    while pending and time.monotonic() - started < RECOVERY_DEADLINE:
        answers = ask_all(lab, deleted, tuple(sorted(pending)))
        for mode, got in answers.items():
            healthy = all(got[c].status == 200 for c in EXISTING)
            if healthy and got["deleted"].status == lab.deleted_baseline[mode]:
                recovered[mode] = round(time.monotonic() - started, 1)
                pending.discard(mode)
        if pending:
            time.sleep(0.5)
    return recovered


# -- a Gunicorn worker killed mid-request ---------------------------------------------------------


def run_worker_kill(lab: Lab, mode: str = "warm") -> Row:
    """SIGKILL the worker serving a slow request: no 404 for existing, and a new worker."""
    service = lab.services[mode]
    before = lab.worker_pids(mode)
    deleted = lab.fresh_deleted()
    nova_everywhere(delay=0.6)(lab)  # slow, but within the 1 s timeout
    problems: list[str] = []
    try:
        slow, sock = _send_raw(service, f"/check/{deleted}")
        time.sleep(0.3)
        victim = _worker_serving(before, slow)
        if victim is None:
            problems.append("could not find the worker serving the slow request")
        else:
            psutil.Process(victim).send_signal(signal.SIGKILL)
        during = ask_all(lab, lab.fresh_deleted(), (mode,))[mode]
        killed = _read_status(sock)
    finally:
        lab.cloud.clear_faults()
    replaced = _wait_for_replacement(lab, mode, before, victim)
    if not replaced:
        problems.append("the master did not replace the killed worker")
    recovered = wait_for_recovery(lab, deleted, (mode,))[mode]
    if recovered is None:
        problems.append(f"no recovery within {RECOVERY_DEADLINE:.0f}s")
    answers = {**during, "deleted": Answer(killed)}
    if killed == 404 or killed not in ("reset", 404, 200, 500):
        problems.append(f"the killed request answered {killed}")
    for column in EXISTING:
        if answers[column].status == 404:
            problems.append(f"FALSE 404 for {column}")
    lab.workers[mode] = lab.worker_pids(mode)
    return Row("Gunicorn worker killed mid-request", mode, answers, recovered, problems)


def _send_raw(service: ServiceProcess, path: str) -> tuple[int, socket.socket]:
    host, port = service.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    return sock.getsockname()[1], sock


def _worker_serving(workers: set[int], client_port: int) -> int | None:
    """Return the worker holding the connection that comes from `client_port`."""
    for pid in workers:
        with contextlib.suppress(psutil.Error):
            for conn in psutil.Process(pid).net_connections(kind="tcp"):
                if conn.raddr and conn.raddr.port == client_port:
                    return pid
    return None


def _read_status(sock: socket.socket) -> int | str:
    """Return the status the service answered on `sock`, or "reset" if it hung up."""
    with sock:
        try:
            data = sock.recv(64)
        except OSError:
            return "reset"
    if not data:
        return "reset"
    return int(data.split(b" ", 2)[1])


def _wait_for_replacement(lab: Lab, mode: str, before: set[int], victim: int | None) -> bool:
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        now = lab.worker_pids(mode)
        if len(now) == len(before) and victim not in now:
            return True
        time.sleep(0.2)
    return False


# -- a catalog region the configuration does not name ---------------------------------------------

UNCOVERED_EXPECTED = "200 500 200 500"


def run_uncovered_region(lab: Lab) -> Row:
    """A service whose clouds.yaml names RegionOne only, while the catalog also has RegionTwo.

    The RegionTwo instance must not be answered absent, nor any deleted one: the
    cloud has a region nobody checks (500 naming it); /readyz is 503.
    """
    assert lab.workdir is not None
    path = lab.cloud.write_clouds_yaml(
        lab.workdir / f"clouds-r1-only-{id(lab.cloud)}.yaml", regions=["RegionOne"]
    )
    env = {
        "OS_CLIENT_CONFIG_FILE": str(path),
        "INSTANCEAPI_CLOUDS": "demo",
        **COMMON_ENV,
        **MODE_ENV["warm"],
    }
    case = Case(
        "A catalog region the configuration does not name (clouds.yaml: RegionOne only)",
        lambda _: None,
        {"warm": UNCOVERED_EXPECTED},
        r"RegionTwo.*INSTANCEAPI_EXCLUDE_REGIONS",
    )
    with ServiceProcess(env, workers=1, ready_path="/healthz") as service:
        deleted = lab.fresh_deleted()
        answers = {}
        for column in COLUMNS:
            uuid = {**lab.existing, "deleted": deleted, "invalid": INVALID}[column]
            answers[column] = ask(service, uuid)
        ready = ask_path(service, "/readyz")
    problems = judge(case, "warm", answers, lab)
    if ready.status != 503 or "RegionTwo" not in ready.text:
        problems.append(f"/readyz answered {ready.status}, not a 503 naming RegionTwo")
    return Row(case.name, "warm", answers, None, problems)


# -- the table ------------------------------------------------------------------------------------


def cell(answer: Answer) -> str:
    """Render one answer for the table."""
    return str(answer.status)


def table(rows: list[Row]) -> str:
    """Return the matrix as a Markdown table."""
    head = ["case", "index", *COLUMNS, "false 404s", "recovered", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        recovered = "n/a" if row.recovered_after is None else f"{row.recovered_after:.1f}s"
        verdict = "ok" if not row.problems else "FAIL: " + "; ".join(row.problems)
        values = [row.case, row.mode, *(cell(row.answers[c]) for c in COLUMNS)]
        values += [str(row.false_404s), recovered, verdict]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


def reasons(rows: list[Row]) -> str:
    """Return, per row, the first doubt answer's reasons (what a 500 says)."""
    lines = []
    for row in rows:
        doubt = next((a for a in row.answers.values() if a.status in DOUBT), None)
        if doubt is not None:
            lines.append(f"- {row.case} / {row.mode}: {doubt.text}")
    return "\n".join(lines)


def run_all(workdir: Path, progress: Callable[[str], None] = lambda _: None) -> list[Row]:
    """Run every case, then the worker kill."""
    rows: list[Row] = []
    with labs(workdir) as running:
        for case in CASES:
            started = time.monotonic()
            rows += run_case(running[case.lab], case)
            progress(f"{case.name}: {time.monotonic() - started:.1f}s")
        rows.append(run_worker_kill(running["main"]))
        rows.append(run_uncovered_region(running["main"]))
    return rows


def main(argv: list[str] | None = None) -> int:
    """Print the matrix (and optionally write it into a Markdown file between markers)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="replace the table in this Markdown file")
    parser.add_argument("--details", action="store_true", help="print what each 500 said")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fault-matrix-") as workdir:
        rows = run_all(Path(workdir), lambda line: print(line, file=sys.stderr, flush=True))
    text = table(rows)
    print(text)
    if args.details:
        print("\n" + reasons(rows))
    took = time.monotonic() - started
    summary = (
        f"{len(rows)} rows, {sum(r.false_404s for r in rows)} false 404s, "
        f"{sum(1 for r in rows if r.problems)} failing, {took:.0f} s in all "
        f"({time.strftime('%Y-%m-%d')}, {psutil.cpu_count()} cores)."
    )
    print("\n" + summary)
    if args.write:
        _write_between_markers(args.write, f"{text}\n\n{summary}")
    return 1 if any(r.problems for r in rows) else 0


def _write_between_markers(path: Path, text: str) -> None:
    begin, end = "<!-- matrix:begin -->", "<!-- matrix:end -->"
    doc = path.read_text(encoding="utf-8")
    head, _, rest = doc.partition(begin)
    _, _, tail = rest.partition(end)
    path.write_text(f"{head}{begin}\n{text}\n{end}{tail}", encoding="utf-8")


if __name__ == "__main__":
    threading.current_thread().name = "fault-matrix"
    sys.exit(main())
