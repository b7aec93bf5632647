"""What reap tells people: the summary, the per-host report file, terminal progress."""

from __future__ import annotations

import csv
import json
import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from instanceapi.reap.model import Action, Decision

FIELDS = ("host_id", "host", "uuid", "answer", "action", "reason", "outcome", "detail")
_LIST_LIMIT = 50
DETAIL_LIMIT = 500  # characters of a detail kept in the report and the audit log
# A cell starting with one of these is a formula (or becomes one) in a spreadsheet.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def clip(text: str, limit: int = DETAIL_LIMIT) -> str:
    """Return `text` cut to `limit` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def neutralise(value: object) -> object:
    """Return a CSV cell a spreadsheet shows as text: a formula start gets a leading '."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def row(decision: Decision) -> dict[str, object]:
    """Return the report row of one decision."""
    return {
        "host_id": decision.host.id,
        "host": decision.host.name,
        "uuid": decision.uuid or "",
        "answer": decision.answer.value if decision.answer else "",
        "action": decision.action.value,
        "reason": decision.reason,
        "outcome": decision.outcome,
        "detail": clip(decision.detail),
    }


def write_report(path: Path, decisions: Sequence[Decision], fmt: str | None = None) -> None:
    """Write one row per host to `path` as CSV or JSON (by `fmt`, else by the extension).

    The file is readable by its owner only (0600, also when it existed before): it
    names every host. CSV cells are neutralised against spreadsheet formulas, since a
    guest can set its own virt::uuid fact.
    """
    fmt = fmt or ("json" if path.suffix.lower() == ".json" else "csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [row(d) for d in decisions]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
        if fmt == "json":
            json.dump(rows, fh, indent=1)
            fh.write("\n")
        else:
            writer = csv.DictWriter(fh, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows({k: neutralise(v) for k, v in r.items()} for r in rows)


def tally(decisions: Sequence[Decision]) -> Counter[str]:
    """Count decisions by summary line: skipped, present, unknown, guarded, pending, ..."""
    counts: Counter[str] = Counter()
    for d in decisions:
        counts[_bucket(d)] += 1
    return counts


def _bucket(d: Decision) -> str:
    if d.action is Action.SKIP:
        return "skipped"
    if d.action is Action.PENDING:
        return "pending"
    if d.action is Action.DELETE:
        return "failed" if d.outcome.startswith("delete-failed") else "deleted"
    return {"present": "present", "no-authoritative-answer": "unknown"}.get(d.reason, "guarded")


def render_summary(
    decisions: Sequence[Decision], *, mode: str, hosts_read: int, headline: str
) -> str:
    """Return the human-readable summary printed at the end of every run."""
    counts = tally(decisions)
    dry = mode != "apply"
    lines = [
        f"instanceapi reap ({mode}): {headline}",
        f"  hosts read             {hosts_read}",
        f"  skipped                {counts['skipped']}{_reasons(decisions, Action.SKIP)}",
        f"  candidates             {len(decisions) - counts['skipped']}",
        f"    present              {counts['present']}",
        f"    no answer (kept)     {counts['unknown']}",
        f"    absent, kept         {counts['guarded']}{_reasons(decisions, Action.KEEP)}",
        f"    absent, pending      {counts['pending']}",
        f"    {'would delete' if dry else 'deleted':<21}{counts['deleted']}",
        f"    failed               {counts['failed']}",
    ]
    lines += _listing(
        "Delete" + (" (dry-run, nothing deleted)" if dry else ""), decisions, "deleted"
    )
    lines += _listing("Failed deletions", decisions, "failed")
    lines += _listing("Absent, awaiting confirmation", decisions, "pending")
    if counts["pending"]:
        lines.append(
            f"  (deleted once absent in --confirm-runs runs, --confirm-interval apart){_hint(dry)}"
        )
    lines += _listing("Absent but kept", decisions, "guarded")
    lines += _listing("No authoritative answer", decisions, "unknown")
    return "\n".join(lines) + "\n"


def _hint(dry: bool) -> str:
    return "; a dry-run records nothing" if dry else ""


def _reasons(decisions: Sequence[Decision], action: Action) -> str:
    skip = {"present", "no-authoritative-answer"}
    found = Counter(d.reason for d in decisions if d.action is action and d.reason not in skip)
    return "  (" + ", ".join(f"{r} {n}" for r, n in sorted(found.items())) + ")" if found else ""


def _listing(title: str, decisions: Sequence[Decision], bucket: str) -> list[str]:
    chosen = [d for d in decisions if _bucket(d) == bucket]
    if not chosen:
        return []
    lines = [f"{title}:"]
    for d in chosen[:_LIST_LIMIT]:
        note = d.outcome if d.reason in ("confirmed", "absent") else f"{d.reason}; {d.outcome}"
        verbose = bucket in ("failed", "unknown") or d.reason == "detail-unavailable"
        extra = f" ({d.detail})" if verbose and d.detail else ""
        lines.append(f"  {d.host.name}  id={d.host.id}  uuid={d.uuid}  {note}{extra}")
    if len(chosen) > _LIST_LIMIT:
        lines.append(f"  ... and {len(chosen) - _LIST_LIMIT} more (see --report)")
    return lines


class Progress:
    """Progress on one overwritten terminal line; silent when not on a terminal."""

    def __init__(self, stream: TextIO, enabled: bool | None = None) -> None:
        """Write to `stream` only if it is a TTY (or when `enabled` says so)."""
        self.stream = stream
        self.enabled = stream.isatty() if enabled is None else enabled
        self._last = 0.0
        self._shown = False

    def __call__(self, label: str, done: int, total: int) -> None:
        """Show `label: done/total`, at most ten times a second."""
        now = time.monotonic()
        if not self.enabled or (now - self._last < 0.1 and done < total):
            return
        self._last = now
        self._shown = True
        self.stream.write(f"\r\x1b[K{label}: {done}/{total}")
        self.stream.flush()

    def clear(self) -> None:
        """Erase the progress line before the summary is printed."""
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False
