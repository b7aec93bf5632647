"""Append-only JSON-lines audit log: one line per decision, flushed to disk."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from instanceapi.reap.model import Decision
from instanceapi.reap.report import clip


def audit_record(
    decision: Decision, *, run_id: str, mode: str, when: datetime
) -> dict[str, object]:
    """Return the audit fields of one decision."""
    host = decision.host
    return {
        "time": when.isoformat(),
        "run": run_id,
        "mode": mode,
        "host": host.name,
        "host_id": host.id,
        "uuid": decision.uuid,
        "answer": decision.answer.value if decision.answer else None,
        "action": decision.action.value,
        "reason": decision.reason,
        "outcome": decision.outcome,
        "detail": clip(decision.detail),
    }


class AuditLog:
    """Append decisions to a JSON-lines file that is never rewritten or truncated."""

    def __init__(self, path: Path, *, run_id: str, mode: str) -> None:
        """Append to `path`; every line carries `run_id` and `mode` (apply or dry-run)."""
        self.path = path
        self.run_id = run_id
        self.mode = mode

    def write(self, decisions: Iterable[Decision], when: datetime) -> int:
        """Append one line per decision and fsync; return the number of lines."""
        lines = [
            json.dumps(audit_record(d, run_id=self.run_id, mode=self.mode, when=when)) + "\n"
            for d in decisions
        ]
        if not lines:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write("".join(lines))
            fh.flush()
            os.fsync(fh.fileno())
        return len(lines)
