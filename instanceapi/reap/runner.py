"""One reap run, start to end: gate, read, ask, cap, guard, confirm, delete, record.

Every collaborator is passed in, so tests run the real sequence against simulated
Satellite and service endpoints, with a clock they control.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from instanceapi.reap import plan, state
from instanceapi.reap.audit import AuditLog
from instanceapi.reap.model import Action, Answer, Candidate, Decision, Host, Verdict
from instanceapi.reap.satellite import SatelliteClient, SatelliteError
from instanceapi.reap.service import ServiceClient

EXIT_OK = 0
EXIT_DELETE_FAILED = 1
EXIT_USAGE = 2
EXIT_SATELLITE = 3
EXIT_NOT_READY = 4
EXIT_CAP = 5
EXIT_DOUBT = 6

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Settings:
    """What one run does, independent of where it reads from."""

    apply: bool = False
    policy: plan.Policy = field(default_factory=plan.Policy)
    search: str = ""
    uuid_fact: str = "virt::uuid"
    product_fact: str = "dmi::system::product_name"
    confirm_runs: int = 2
    confirm_interval: timedelta = timedelta(hours=1)
    canary: str | None = None


@dataclass(frozen=True)
class Result:
    """How a run ended: exit status, one-line headline, every decision."""

    status: int
    headline: str
    decisions: list[Decision]
    hosts_read: int = 0


class Reaper:
    """Run the reap sequence once."""

    def __init__(
        self,
        settings: Settings,
        satellite: SatelliteClient,
        service: ServiceClient,
        state_file: state.StateFile,
        audit: AuditLog,
        clock: Callable[[], datetime],
        progress: Progress | None = None,
        warn: Callable[[str], None] = lambda _msg: None,
    ) -> None:
        """Wire the collaborators; nothing is read or written before `run()`."""
        self.settings = settings
        self.satellite = satellite
        self.service = service
        self.state_file = state_file
        self.audit = audit
        self.clock = clock
        self.progress = progress
        self.warn = warn
        self._audited: list[Decision] = []
        self._verdicts: dict[str, Verdict] = {}

    @property
    def mode(self) -> str:
        """Return "apply" or "dry-run"."""
        return "apply" if self.settings.apply else "dry-run"

    def run(self) -> Result:
        """Do one run and return its result; see the module docstring of cli for statuses."""
        problem = self._gate()
        if problem:
            return Result(EXIT_NOT_READY, f"service not ready, nothing done: {problem}", [])
        try:
            hosts = self._read_hosts()
        except SatelliteError as ex:
            return Result(EXIT_SATELLITE, f"cannot read Satellite, nothing done: {ex}", [])
        return self._decide(hosts)

    def _gate(self) -> str | None:
        problem = self.service.readiness()
        if problem is None and self.settings.canary:
            problem = self.service.canary(self.settings.canary)
        return problem

    def _read_hosts(self) -> list[Host]:
        hosts = self.satellite.hosts(self.settings.search, self.progress)
        uuids = self.satellite.fact_values(self.settings.uuid_fact, self.progress)
        products = self.satellite.fact_values(self.settings.product_fact, self.progress)
        return [replace(h, uuid=uuids.get(h.name), product=products.get(h.name)) for h in hosts]

    def _decide(self, hosts: list[Host]) -> Result:
        now = self.clock()
        policy = self.settings.policy
        candidates, skipped = plan.select(hosts, policy)
        self._verdicts = self.service.check_many([c.uuid for c in candidates], self.progress)
        kept, absent = plan.classify(candidates, self._verdicts)
        settled = skipped + kept
        breach = plan.cap_breach(len(absent), len(candidates), policy)
        if breach:
            held = [self._absent(c, Action.KEEP, "cap-exceeded") for c in absent]
            headline = f"cap exceeded, nothing deleted: {breach}"
            return self._finish(EXIT_CAP, headline, settled + held, hosts)
        guarded, confirmed = self._guard(absent, now)
        return self._confirm(confirmed, settled + guarded, hosts, now)

    def _guard(
        self, absent: list[Candidate], now: datetime
    ) -> tuple[list[Decision], list[Candidate]]:
        """Re-read each absent host; keep those a guard applies to."""
        guarded: list[Decision] = []
        confirmed: list[Candidate] = []
        for cand in absent:
            try:
                detail = self.satellite.host_detail(cand.host.id)
            except SatelliteError as ex:
                guarded.append(self._absent(cand, Action.KEEP, "detail-unavailable", str(ex)))
                continue
            why = plan.guard(cand, detail, self.settings.policy, now)
            if why:
                guarded.append(self._absent(cand, Action.KEEP, why))
            else:
                confirmed.append(cand)
        return guarded, confirmed

    def _confirm(
        self, confirmed: list[Candidate], settled: list[Decision], hosts: list[Host], now: datetime
    ) -> Result:
        """Count this run's sightings; delete (or, in dry-run, list) the confirmed hosts."""
        old, warning = self.state_file.load(repair=self.settings.apply)
        if warning:
            self.warn(warning)
        sightings = {c.host.id: (c.host.name, c.uuid) for c in confirmed}
        marks = state.advance(old, sightings, now, self.settings.confirm_interval)
        ready = state.due(marks, self.settings.confirm_runs)
        runs, apply = self.settings.confirm_runs, self.settings.apply
        verb = "marked" if apply else "would mark"
        pending = [
            self._absent(
                c, Action.PENDING, "absent", outcome=f"{verb} {marks[c.host.id].count}/{runs}"
            )
            for c in confirmed
            if c.host.id not in ready
        ]
        doomed = [c for c in confirmed if c.host.id in ready]
        if not apply:
            planned = [
                self._absent(c, Action.DELETE, "confirmed", outcome="would delete") for c in doomed
            ]
            headline = "dry-run, nothing changed (--apply to act)"
            return self._finish(None, headline, settled + pending + planned, hosts)
        problem = self._gate() if doomed else None
        if problem:
            held = [self._absent(c, Action.KEEP, "service-not-ready") for c in doomed]
            headline = f"service not ready, nothing deleted: {problem}"
            return self._finish(EXIT_NOT_READY, headline, settled + pending + held, hosts)
        deleted = self._delete(doomed, marks)
        self.state_file.save(marks)
        return self._finish(None, "applied", settled + pending + deleted, hosts)

    def _delete(self, doomed: list[Candidate], marks: dict[int, state.Mark]) -> list[Decision]:
        """Delete each host; a failure is recorded and the others go ahead."""
        results: list[Decision] = []
        for number, cand in enumerate(doomed, 1):
            try:
                self.satellite.delete_host(cand.host.id)
                outcome = "deleted"
                del marks[cand.host.id]
            except SatelliteError as ex:
                outcome = f"failed: {ex}"  # the mark stays: the next run tries again
            decision = self._absent(cand, Action.DELETE, "confirmed", outcome=outcome)
            # Written at once, so a crash later in the run cannot lose the record of a deletion.
            self.audit.write([decision], self.clock())
            self._audited.append(decision)
            results.append(decision)
            if self.progress is not None:
                self.progress("deleting", number, len(doomed))
        return results

    def _absent(
        self, cand: Candidate, action: Action, reason: str, detail: str = "", outcome: str = ""
    ) -> Decision:
        """Build the decision for a candidate the service reported absent."""
        said = self._verdicts.get(cand.uuid, Verdict(Answer.ABSENT)).detail
        return replace(plan.absent_decision(cand, action, reason, detail or said), outcome=outcome)

    def _finish(
        self, status: int | None, headline: str, decisions: Sequence[Decision], hosts: list[Host]
    ) -> Result:
        done = [replace(d, outcome=d.outcome or _default_outcome(d)) for d in decisions]
        done.sort(key=lambda d: (d.host.name, d.host.id))
        fresh = [d for d in done if d.action is not Action.DELETE or d not in self._audited]
        self.audit.write(fresh, self.clock())
        if status is None:
            status = _status(done)
        return Result(status, headline, done, len(hosts))


def _default_outcome(decision: Decision) -> str:
    return "skipped" if decision.action is Action.SKIP else "kept"


def _status(decisions: Sequence[Decision]) -> int:
    if any(d.outcome.startswith("failed") for d in decisions):
        return EXIT_DELETE_FAILED
    if any(d.answer is Answer.UNKNOWN for d in decisions):
        return EXIT_DOUBT
    return EXIT_OK
