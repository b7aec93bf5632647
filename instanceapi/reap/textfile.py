"""A reap run's figures for Prometheus, in node_exporter's textfile-collector format.

`instanceapi reap --metrics-file PATH` writes them at the end of every run that
parsed its options, failed or not. The file is replaced atomically (written
next to it, then renamed), so node_exporter never reads half a file. The last
success time is carried over from the previous file when this run failed.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from instanceapi.reap.model import Action, Answer, Decision
from instanceapi.reap.runner import FAILED

__all__ = ["PREFIX", "Figures", "RunRecorder", "figures_of", "is_failed_deletion", "render"]

PREFIX = "instanceapi_reap_"
LAST_SUCCESS = f"{PREFIX}last_success_timestamp_seconds"


def is_failed_deletion(decision: Decision) -> bool:
    """Return True if reap sent a DELETE for this host and it failed (outcome delete-failed)."""
    return decision.outcome.startswith(FAILED)


@dataclass(frozen=True)
class Figures:
    """What one run did, counted from its decisions."""

    hosts_read: int = 0
    candidates: int = 0
    absent: int = 0
    deleted: int = 0
    failed_deletions: int = 0
    pending: int = 0
    kept: dict[str, int] = field(default_factory=dict)


def figures_of(decisions: Iterable[Decision], hosts_read: int) -> Figures:
    """Count a run's decisions (skipped hosts are read, but not candidates)."""
    asked = [d for d in decisions if d.action is not Action.SKIP]
    failed = [d for d in asked if is_failed_deletion(d)]
    kept = Counter(d.reason for d in asked if d.action is Action.KEEP)
    return Figures(
        hosts_read=hosts_read,
        candidates=len(asked),
        absent=sum(1 for d in asked if d.answer is Answer.ABSENT),
        deleted=sum(1 for d in asked if d.action is Action.DELETE and d.outcome == "deleted"),
        failed_deletions=len(failed),
        pending=sum(1 for d in asked if d.action is Action.PENDING),
        kept=dict(sorted(kept.items())),
    )


_HELP = {
    "last_run_start_timestamp_seconds": "When the last reap run started.",
    "last_run_end_timestamp_seconds": "When the last reap run ended.",
    "last_success_timestamp_seconds": "When a reap run last ended with exit status 0.",
    "last_run_exit_status": "Exit status of the last reap run (see docs/satellite.md).",
    "last_run_apply": "1 if the last run could delete (--apply), 0 for a dry run.",
    "last_run_hosts_read": "Host records the last run read from Satellite.",
    "last_run_candidates": "OpenStack guests with a usable UUID the last run asked about.",
    "last_run_absent": "Candidates the service said were absent in the last run.",
    "last_run_deleted": "Host records the last run deleted.",
    "last_run_failed_deletions": "Deletions Satellite refused or failed in the last run.",
    "last_run_pending": "Absent hosts the last run marked, awaiting confirmation.",
    "last_run_kept": "Candidates the last run kept, by reason.",
}


def render(
    started: float, ended: float, status: int, apply: bool, figures: Figures, success: float | None
) -> str:
    """Return the textfile body: one gauge per figure, HELP and TYPE for each."""
    values: dict[str, list[tuple[str, float]]] = {
        "last_run_start_timestamp_seconds": [("", started)],
        "last_run_end_timestamp_seconds": [("", ended)],
        "last_success_timestamp_seconds": [] if success is None else [("", success)],
        "last_run_exit_status": [("", status)],
        "last_run_apply": [("", int(apply))],
        "last_run_hosts_read": [("", figures.hosts_read)],
        "last_run_candidates": [("", figures.candidates)],
        "last_run_absent": [("", figures.absent)],
        "last_run_deleted": [("", figures.deleted)],
        "last_run_failed_deletions": [("", figures.failed_deletions)],
        "last_run_pending": [("", figures.pending)],
        "last_run_kept": [(f'{{reason="{r}"}}', n) for r, n in figures.kept.items()],
    }
    lines: list[str] = []
    for short, samples in values.items():
        if not samples:
            continue
        name = PREFIX + short
        lines += [f"# HELP {name} {_HELP[short]}", f"# TYPE {name} gauge"]
        lines += [f"{name}{labels} {_number(value)}" for labels, value in samples]
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def previous_success(path: Path) -> float | None:
    """Return the last success time recorded in `path`, or None (no file, or none there)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == LAST_SUCCESS:
                    return float(sample.value)
    except ValueError:
        return None  # not ours, or damaged: start afresh
    return None


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` in one rename; readable by node_exporter (0644)."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class RunRecorder:
    """Note when a run started and what it did; write the file when it ends."""

    def __init__(self, path: Path | None, wall: Callable[[], float] = time.time) -> None:
        self.path = path
        self._wall = wall
        self.started = wall()
        self._figures = Figures()
        self._apply = False

    def record(self, decisions: Iterable[Decision], hosts_read: int, apply: bool) -> None:
        """Remember a finished run's decisions (a run stopped early records none)."""
        self._figures = figures_of(decisions, hosts_read)
        self._apply = apply

    def finish(self, status: int) -> None:
        """Write the file (if a path was given) for a run that ended with `status`."""
        if self.path is None:
            return
        ended = self._wall()
        success = ended if status == 0 else previous_success(self.path)
        text = render(self.started, ended, status, self._apply, self._figures, success)
        write_atomically(self.path, text)
