"""One reap run, start to end: gate, read, ask, cap, guard, confirm, delete, record.

Every collaborator is passed in, so tests run the real sequence against simulated
Satellite and service endpoints, with a clock they control.

Whatever way a run ends after the service answered (a cap, the second readiness
gate, the deletion budget, hidden parameters), it records what it saw: the marks of
hosts seen present, unanswered or guarded are dropped, so a later absent sighting
starts again from one.
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
# Absent hosts held back by a stopped run keep their mark as it was (neither counted
# nor dropped); every other host the run saw loses its mark.
_HELD = frozenset({"cap-exceeded", "service-not-ready", "budget-exhausted", "params-hidden"})
FAILED = "delete-failed"


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
    narrow_by: tuple[str, ...] = ()  # "organization_id", "location_id": scope given by name
    budget: int | None = None  # deletions per budget_window; None: policy.max_delete
    budget_window: timedelta = timedelta(days=7)


@dataclass(frozen=True)
class Result:
    """How a run ended: exit status, one-line headline, every decision."""

    status: int
    headline: str
    decisions: list[Decision]
    hosts_read: int = 0


class _Stop(Exception):
    """A run ends early after the service answered; what it saw is still recorded."""

    def __init__(self, status: int, headline: str, held: list[Decision]) -> None:
        super().__init__(headline)
        self.status, self.headline, self.held = status, headline, held


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
        if not hosts:
            return []
        narrow = self._narrowing(hosts)
        uuids = self.satellite.fact_values(self.settings.uuid_fact, self.progress, narrow)
        products = self.satellite.fact_values(self.settings.product_fact, self.progress, narrow)
        return [replace(h, uuid=uuids.get(h.name), product=products.get(h.name)) for h in hosts]

    def _narrowing(self, hosts: list[Host]) -> str:
        """Return "organization_id = N" (and so on) when the scope names one by name."""
        clauses = []
        for key in self.settings.narrow_by:
            ids = {getattr(h, key) for h in hosts}
            if len(ids) == 1 and None not in ids:
                clauses.append(f"{key} = {ids.pop()}")
        return " and ".join(clauses)

    def _decide(self, hosts: list[Host]) -> Result:
        now = self.clock()
        policy = self.settings.policy
        candidates, skipped = plan.select(hosts, policy)
        self._verdicts = self.service.check_many([c.uuid for c in candidates], self.progress)
        kept, absent = plan.classify(candidates, self._verdicts)
        settled = skipped + kept
        try:
            breach = plan.cap_breach(len(absent), len(candidates), policy)
            if breach:
                held = [self._absent(c, Action.KEEP, "cap-exceeded") for c in absent]
                raise _Stop(EXIT_CAP, f"cap exceeded, nothing deleted: {breach}", held)
            guarded, confirmed = self._guard(absent, now)
            return self._confirm(confirmed, settled + guarded, hosts, now)
        except _Stop as stop:
            return self._stopped(stop, settled, hosts)

    def _guard(
        self, absent: list[Candidate], now: datetime
    ) -> tuple[list[Decision], list[Candidate]]:
        """Re-read each absent host; keep those a guard applies to."""
        if absent:
            self._require_parameters(absent)
        guarded: list[Decision] = []
        confirmed: list[Candidate] = []
        for cand in absent:
            try:
                detail = self.satellite.host_detail(cand.host.id, self.settings.uuid_fact)
            except SatelliteError as ex:
                guarded.append(self._absent(cand, Action.KEEP, "detail-unavailable", str(ex)))
                continue
            why = plan.guard(cand, detail, self.settings.policy, now)
            if why:
                guarded.append(self._absent(cand, Action.KEEP, why))
            else:
                confirmed.append(cand)
        return guarded, confirmed

    def _require_parameters(self, absent: list[Candidate]) -> None:
        """Stop an --apply run when the API user cannot see host parameters.

        Foreman hides every host parameter from a user without view_params, so a
        protection parameter would read as "not protected".
        """
        visible: bool | None = None
        for cand in absent:  # the first host still there tells
            try:
                visible = self.satellite.can_read_parameters(cand.host.id)
            except SatelliteError as ex:
                self.warn(f"cannot tell whether host parameters are visible: {ex}")
                visible = False
            if visible is not None:
                break
        if visible is not False:  # True, or every host gone (the re-read keeps them)
            return
        why = (
            "the Satellite API user cannot read host parameters (permission view_params),"
            f" so {self.settings.policy.protect_parameter} would be invisible"
        )
        if not self.settings.apply:
            self.warn(why + "; --apply will refuse to run")
            return
        held = [self._absent(c, Action.KEEP, "params-hidden") for c in absent]
        raise _Stop(EXIT_USAGE, f"refused, nothing deleted: {why}", held)

    def _confirm(
        self, confirmed: list[Candidate], settled: list[Decision], hosts: list[Host], now: datetime
    ) -> Result:
        """Count this run's sightings; delete (or, in dry-run, list) the confirmed hosts."""
        old = self._load(repair=self.settings.apply)
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
            raise _Stop(EXIT_NOT_READY, f"service not ready, nothing deleted: {problem}", held)
        allowed, over = self._within_budget(doomed, now)
        deleted = self._delete(allowed, marks)
        self.state_file.save(marks)
        if over:
            held = [self._absent(c, Action.KEEP, "budget-exhausted") for c in over]
            headline = f"deletion budget exhausted: {len(over)} host(s) held back"
            failed = any(d.outcome.startswith(FAILED) for d in deleted)
            status = EXIT_DELETE_FAILED if failed else EXIT_CAP
            return self._finish(status, headline, settled + pending + deleted + held, hosts)
        return self._finish(None, "applied", settled + pending + deleted, hosts)

    def _within_budget(
        self, doomed: list[Candidate], now: datetime
    ) -> tuple[list[Candidate], list[Candidate]]:
        """Split the doomed hosts into those the rolling budget allows and the rest."""
        budget = self.settings.budget
        if budget is None:
            budget = self.settings.policy.max_delete
        window = self.settings.budget_window
        if self.state_file.history_lost:  # past deletions unknown: assume the worst
            self.state_file.deletions = [now] * budget
            self.state_file.history_lost = False
        used = state.recent(self.state_file.deletions, now, window)
        self.state_file.deletions = used
        left = max(0, budget - len(used))
        return doomed[:left], doomed[left:]

    def _delete(self, doomed: list[Candidate], marks: dict[int, state.Mark]) -> list[Decision]:
        """Delete each host and prove it gone; a failure is recorded and the others go ahead."""
        results: list[Decision] = []
        for number, cand in enumerate(doomed, 1):
            self.state_file.deletions.append(self.clock())  # a DELETE sent spends budget
            try:
                self.satellite.delete_host(cand.host.id)
                outcome = "deleted"
                del marks[cand.host.id]
            except SatelliteError as ex:
                outcome = f"{FAILED}: {ex}"  # the mark stays: the next run tries again
            decision = self._absent(cand, Action.DELETE, "confirmed", outcome=outcome)
            # Written at once, so a crash later in the run cannot lose the record of a deletion.
            self.audit.write([decision], self.clock())
            self._audited.append(decision)
            results.append(decision)
            if self.progress is not None:
                self.progress("deleting", number, len(doomed))
        return results

    def _load(self, *, repair: bool) -> dict[int, state.Mark]:
        old, warning = self.state_file.load(repair=repair)
        if warning:
            self.warn(warning)
        return old

    def _stopped(self, stop: _Stop, settled: list[Decision], hosts: list[Host]) -> Result:
        """End a run early, dropping the marks of every host it saw not absent."""
        decisions = settled + stop.held
        if self.settings.apply:
            seen = {d.host.id for d in decisions if d.reason not in _HELD}
            self.state_file.save(state.forget(self._load(repair=True), seen))
        return self._finish(stop.status, stop.headline, decisions, hosts)

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
    if any(d.outcome.startswith(FAILED) for d in decisions):
        return EXIT_DELETE_FAILED
    if any(d.answer is Answer.UNKNOWN for d in decisions):
        return EXIT_DOUBT
    return EXIT_OK
